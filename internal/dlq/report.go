package dlq

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable writes dead letters as a table, one per line, newest first as
// given: where each came from, its status (a record the loop guard holds
// says so), its error class and fingerprint, and its message cut to one
// line of 80 characters. `trackops dlq list` prints it.
func WriteTable(w io.Writer, msgs []Message) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTOPIC\tORIGINAL\tSTATUS\tREPLAYS\tERROR CLASS\tFINGERPRINT\tRECEIVED\tMESSAGE")
	for _, m := range msgs {
		orig := m.OriginalTopic
		if m.OriginalPartition != nil && m.OriginalOffset != nil {
			orig = fmt.Sprintf("%s[%d]@%d", m.OriginalTopic, *m.OriginalPartition, *m.OriginalOffset)
		}
		status := m.Status
		if m.ReplayBlocked && m.Status == StatusNew {
			status += " (loop guard)"
		}
		msg := strings.Join(strings.Fields(m.ExceptionMessage), " ")
		if len(msg) > 80 {
			msg = msg[:80] + "…"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.ID, m.Topic, orig, status, m.ReplayCount,
			m.ExceptionClass, m.Fingerprint, m.ReceivedAt.Local().Format(time.DateTime), msg)
	}
	if len(msgs) == 0 {
		fmt.Fprintln(tw, "(no dead letters)")
	}
	return tw.Flush()
}

// WriteTable writes what a replay did to each dead letter, then one line of
// totals that says whether it was a dry run. `trackops dlq replay` prints
// it.
func (r ReplayResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTO TOPIC\tOUTCOME\tREPLAY COUNT\tREASON")
	for _, it := range r.Items {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", it.ID, it.OriginalTopic, it.Outcome, it.ReplayCount, it.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verb := "replayed"
	if r.DryRun {
		verb = "would replay (dry run, nothing changed)"
	}
	_, err := fmt.Fprintf(w, "matched %d, %s %d, blocked by the loop guard %d, skipped %d\n",
		r.Matched, verb, r.Replayed, r.Blocked, r.Skipped)
	return err
}
