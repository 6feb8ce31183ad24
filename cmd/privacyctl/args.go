package main

import (
	"fmt"
	"strconv"
	"strings"
)

// valueFlags are the flags that take a value, with or without "=":
// "--source web_form" or "--source=web_form". Whether a command accepts a
// flag is checked after parsing (allowedFlags), so flags may appear anywhere
// on the command line, before or after the positional arguments.
var valueFlags = map[string]bool{
	"api":            true,
	"timeout":        true,
	"jurisdiction":   true,
	"source":         true,
	"policy-version": true,
	"timestamp":      true,
	"format":         true,
	"gpc":            true,
	"token-file":     true,
	"ca":             true,
	"cert":           true,
	"key":            true,
	"regime":         true,
	"id":             true,
	"kind":           true,
	"out":            true,
	"due-within":     true,
	"subject":        true,
	"reason":         true,
}

// boolFlags are the flags that take no value ("--json", or "--json=false").
var boolFlags = map[string]bool{
	"json":     true,
	"verified": true,
	"wait":     true,
	"help":     true,
	"h":        true,
}

// globalFlags are accepted by every command.
var globalFlags = []string{"api", "timeout", "json", "help", "h", "token-file", "ca", "cert", "key"}

// allowedFlags lists, per command, the flags it accepts besides globalFlags.
var allowedFlags = map[string][]string{
	"set":      {"jurisdiction", "gpc", "source", "policy-version", "timestamp"},
	"withdraw": {"jurisdiction", "gpc", "source", "policy-version"},
	"profile":  {"jurisdiction", "gpc", "source", "policy-version", "timestamp"},
	"get":      nil,
	"history":  nil,
	"import":   {"format"},
	// the data-subject request commands
	"erase":             {"regime", "id", "verified"},
	"export":            {"kind", "regime", "id", "verified", "wait", "out"},
	"requests list":     {"due-within", "subject"},
	"requests show":     nil,
	"requests verify":   nil,
	"requests extend":   {"reason"},
	"requests refuse":   {"reason"},
	"requests download": {"out"},
}

// parsedArgs is a command line split into positional arguments and flags.
type parsedArgs struct {
	positional []string
	values     map[string]string // value flags that were given, last one wins
	bools      map[string]bool   // bool flags that were given
	order      []string          // flag names in the order they were given, for error messages
}

// value returns the value of flag name, or def when it was not given.
func (p parsedArgs) value(name, def string) string {
	if v, ok := p.values[name]; ok {
		return v
	}
	return def
}

// has reports whether flag name was given.
func (p parsedArgs) has(name string) bool {
	_, v := p.values[name]
	_, b := p.bools[name]
	return v || b
}

// parseArgs splits args into flags and positional arguments. Flags are
// written "-name" or "--name", with the value as the next argument or after
// "="; "--" ends the flags (for a subject id that starts with "-"). Unknown
// flags are usage errors.
func parseArgs(args []string) (parsedArgs, error) {
	p := parsedArgs{values: map[string]string{}, bools: map[string]bool{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.positional = append(p.positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			p.positional = append(p.positional, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		val, hasVal := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = k, v, true
		}
		switch {
		case valueFlags[name]:
			if !hasVal {
				if i+1 >= len(args) {
					return p, usageError{fmt.Sprintf("flag --%s needs a value", name)}
				}
				i++
				val = args[i]
			}
			p.values[name] = val
		case boolFlags[name]:
			b := true
			if hasVal {
				var err error
				if b, err = strconv.ParseBool(val); err != nil {
					return p, usageError{fmt.Sprintf("flag --%s takes no value or true/false, not %s", name, quote(val))}
				}
			}
			p.bools[name] = b
		default:
			return p, usageError{fmt.Sprintf("unknown flag %s", quote(clip(a, 64)))}
		}
		p.order = append(p.order, name)
	}
	return p, nil
}

// checkFlags returns a usage error if a flag was given that command does not
// accept.
func (p parsedArgs) checkFlags(command string) error {
	ok := map[string]bool{}
	for _, f := range globalFlags {
		ok[f] = true
	}
	for _, f := range allowedFlags[command] {
		ok[f] = true
	}
	for _, f := range p.order {
		if !ok[f] {
			if !strings.Contains(command, " ") && command != "erase" && command != "export" {
				command = "consent " + command
			}
			return usageError{fmt.Sprintf("%s does not take --%s", command, f)}
		}
	}
	return nil
}
