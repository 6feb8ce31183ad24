package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"text/tabwriter"
	"time"
)

// receipt is the answer to set and withdraw (202).
type receipt struct {
	ReceiptID          string `json:"receipt_id"`
	SubjectID          string `json:"subject_id"`
	Purpose            string `json:"purpose"`
	State              string `json:"state"`
	AcceptedAt         string `json:"accepted_at"`
	GPC                *bool  `json:"gpc,omitempty"`
	GPCSignalReceiptID string `json:"gpc_signal_receipt_id,omitempty"`
}

// profileReceipt is the answer to profile (202).
type profileReceipt struct {
	ReceiptID          string `json:"receipt_id"`
	SubjectID          string `json:"subject_id"`
	Jurisdiction       string `json:"jurisdiction"`
	GPC                *bool  `json:"gpc,omitempty"`
	AcceptedAt         string `json:"accepted_at"`
	GPCSignalReceiptID string `json:"gpc_signal_receipt_id,omitempty"`
}

// subjectConsent is the answer to get: the latest state per purpose, the
// jurisdiction and the GPC signal.
type subjectConsent struct {
	SubjectID             string                  `json:"subject_id"`
	Jurisdiction          string                  `json:"jurisdiction"`
	JurisdictionUpdatedAt string                  `json:"jurisdiction_updated_at"`
	GPC                   bool                    `json:"gpc"`
	GPCUpdatedAt          string                  `json:"gpc_updated_at"`
	Version               int64                   `json:"version"`
	Purposes              map[string]purposeState `json:"purposes"`
}

// purposeState is one purpose in subjectConsent.
type purposeState struct {
	State     string `json:"state"`
	UpdatedAt string `json:"updated_at"`
}

// consentHistory is the answer to history: every change, newest first.
type consentHistory struct {
	SubjectID string          `json:"subject_id"`
	Changes   []consentChange `json:"changes"`
}

// consentChange is one recorded consent change; a subject-level change
// (a profile) has no purpose and no state.
type consentChange struct {
	ReceiptID     string `json:"receipt_id"`
	SubjectID     string `json:"subject_id"`
	Purpose       string `json:"purpose"`
	State         string `json:"state"`
	Jurisdiction  string `json:"jurisdiction"`
	Source        string `json:"source"`
	PolicyVersion string `json:"policy_version"`
	Timestamp     string `json:"timestamp"`
	GPC           *bool  `json:"gpc"`
}

// importResult is the answer to import.
type importResult struct {
	Accepted int         `json:"accepted"`
	Rejected int         `json:"rejected"`
	Errors   []lineError `json:"errors"`
}

// lineError is one rejected line of an import; Line counts from 1, the CSV
// header being line 1.
type lineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// cell makes a server-provided value safe for a table cell ("-" when empty).
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return sanitize(s, 300)
}

// gpcCell prints an optional GPC value: true, false, or "-".
func gpcCell(g *bool) string {
	if g == nil {
		return "-"
	}
	return fmt.Sprint(*g)
}

// printReceipt prints the one-line form of a set or withdraw answer.
func printReceipt(w io.Writer, r receipt) {
	gpc := ""
	if r.GPC != nil {
		gpc = " gpc " + gpcCell(r.GPC)
	}
	fmt.Fprintf(w, "accepted: subject %s purpose %s state %s%s (receipt %s at %s)\n",
		quote(sanitize(r.SubjectID, 300)), cell(r.Purpose), cell(r.State), gpc, cell(r.ReceiptID), cell(r.AcceptedAt))
}

// printProfileReceipt prints the one-line form of a profile answer.
func printProfileReceipt(w io.Writer, r profileReceipt) {
	fmt.Fprintf(w, "accepted: subject %s jurisdiction %s gpc %s (receipt %s at %s)\n",
		quote(sanitize(r.SubjectID, 300)), cell(r.Jurisdiction), gpcCell(r.GPC), cell(r.ReceiptID), cell(r.AcceptedAt))
}

// since appends " (recorded T)" when t is not empty.
func since(t string) string {
	if t == "" {
		return ""
	}
	return " (recorded " + cell(t) + ")"
}

// printConsent prints a subject's consent as a table, purposes in canonical
// order and any purpose this client does not know after them.
func printConsent(w io.Writer, c subjectConsent) {
	fmt.Fprintf(w, "subject:      %s\n", quote(sanitize(c.SubjectID, 300)))
	fmt.Fprintf(w, "jurisdiction: %s%s\n", cell(c.Jurisdiction), since(c.JurisdictionUpdatedAt))
	fmt.Fprintf(w, "gpc:          %v%s\n", c.GPC, since(c.GPCUpdatedAt))
	version := fmt.Sprint(c.Version)
	if c.Version > 0 {
		version += " (" + time.UnixMilli(c.Version).UTC().Format(time.RFC3339Nano) + ")"
	}
	fmt.Fprintf(w, "version:      %s\n\n", version)
	names := slices.Clone(purposes)
	var extra []string
	for p := range c.Purposes {
		if !slices.Contains(purposes, p) {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	names = append(names, extra...)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PURPOSE\tSTATE\tUPDATED")
	for _, p := range names {
		ps, ok := c.Purposes[p]
		state := ps.State
		if !ok {
			state = "(missing)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", cell(p), cell(state), cell(ps.UpdatedAt))
	}
	tw.Flush()
}

// printHistory prints a subject's consent changes as a table, newest first
// as the API returns them.
func printHistory(w io.Writer, subject string, h consentHistory) {
	if h.SubjectID != "" {
		subject = h.SubjectID
	}
	if len(h.Changes) == 0 {
		fmt.Fprintf(w, "subject %s: no consent changes recorded\n", quote(sanitize(subject, 300)))
		return
	}
	fmt.Fprintf(w, "subject %s: %d change(s), newest first\n\n", quote(sanitize(subject, 300)), len(h.Changes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIMESTAMP\tPURPOSE\tSTATE\tJURISDICTION\tGPC\tSOURCE\tPOLICY\tRECEIPT")
	for _, c := range h.Changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(c.Timestamp), cell(c.Purpose), cell(c.State),
			cell(c.Jurisdiction), gpcCell(c.GPC), cell(c.Source), cell(c.PolicyVersion), cell(c.ReceiptID))
	}
	tw.Flush()
}

// printImport prints an import's summary and each rejected line.
func printImport(w io.Writer, file string, r importResult) {
	fmt.Fprintf(w, "import %s: %d accepted, %d rejected\n", sanitize(file, 300), r.Accepted, r.Rejected)
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  line %d: %s\n", e.Line, sanitize(e.Error, 1024))
	}
	if r.Rejected > 0 {
		fmt.Fprintln(w, "rejected lines were not written; fix them and import only those lines again")
	}
}
