package redact_test

import (
	"fmt"

	"github.com/privacy-pipeline/pipeline/internal/fields/redact"
)

func ExampleAppendRedacted() {
	buf := make([]byte, 0, 256) // reused across messages: no allocations
	msg := "Hi, I'm lan.nguyen@example.vn, call me on +84 90 123 45 67."
	buf, counts := redact.AppendRedacted(buf[:0], msg)
	fmt.Println(string(buf))
	fmt.Println(counts, counts.Total(), counts[redact.Phone])
	// Output:
	// Hi, I'm [EMAIL], call me on [PHONE].
	// email=1 phone=1 2 1
}

func ExampleString() {
	fmt.Println(redact.String("card 4111 1111 1111 1111, exp 12/27, from 192.0.2.7 / 2001:db8::7"))
	fmt.Println(redact.String("order 42 shipped on 2024-05-01"))
	// Output:
	// card [CARD], exp 12/27, from [IP] / [IP]
	// order 42 shipped on 2024-05-01
}

func ExampleContains() {
	fmt.Println(redact.Contains("ping me at ops@example.com"), redact.Contains("see you at 12:30"))
	// Output: true false
}
