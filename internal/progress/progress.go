// Package progress shows how far long work has got, the same way for every
// command: a bar redrawn in place when the output is a terminal, a plain
// line at most once an interval otherwise (logs, pipes, CI), or a log
// record for work inside the server (a CDC snapshot). A nil *Tracker does
// nothing, so code can report progress whether or not anyone watches.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// DefaultInterval is how often a plain line or log record is written.
const DefaultInterval = time.Second

// Tracker reports the progress of one piece of work.
type Tracker struct {
	mu       sync.Mutex
	w        io.Writer
	log      *slog.Logger
	tty      bool
	label    string
	total    int64
	done     int64
	note     string
	started  time.Time
	last     time.Time
	interval time.Duration
	drawn    bool // a bar is on the terminal's current line
	finished bool
	now      func() time.Time
}

// Option tunes a Tracker.
type Option func(*Tracker)

// Interval sets how often plain lines (or log records) are written; zero
// writes one per step.
func Interval(d time.Duration) Option { return func(t *Tracker) { t.interval = d } }

// Terminal forces the bar (true) or plain lines (false), whatever w is.
func Terminal(on bool) Option { return func(t *Tracker) { t.tty = on } }

// New tracks work of total steps (0 when unknown) and writes to w: a bar
// when w is a terminal, plain lines otherwise.
func New(w io.Writer, label string, total int64, opts ...Option) *Tracker {
	t := &Tracker{w: w, label: label, total: total, interval: DefaultInterval, now: time.Now, tty: isTerminal(w)}
	for _, o := range opts {
		o(t)
	}
	t.started = t.now()
	return t
}

// NewLog tracks work inside the server: an Info record at most once an
// interval, and one when it is done.
func NewLog(log *slog.Logger, label string, total int64, opts ...Option) *Tracker {
	t := &Tracker{log: log, label: label, total: total, interval: 10 * time.Second, now: time.Now}
	for _, o := range opts {
		o(t)
	}
	t.started = t.now()
	return t
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// SetTotal sets the number of steps once it is known.
func (t *Tracker) SetTotal(total int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total = total
}

// Step records one step done; note says what (shown with the count).
func (t *Tracker) Step(note string) { t.Add(1, note) }

// Add records n steps done.
func (t *Tracker) Add(n int64, note string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done += n
	t.note = note
	now := t.now()
	switch {
	case t.tty:
		// Redraw at most ten times a second, and always the last step.
		if now.Sub(t.last) >= 100*time.Millisecond || (t.total > 0 && t.done >= t.total) {
			t.last = now
			t.drawBar()
		}
	case now.Sub(t.last) >= t.interval:
		t.last = now
		t.line(false)
	}
}

// Done writes the final state: the bar completed and ended with a newline,
// or a last plain line.
func (t *Tracker) Done() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	t.finished = true
	if t.tty {
		t.drawBar()
		fmt.Fprintln(t.w)
		t.drawn = false
		return
	}
	t.line(true)
}

// Writer returns a writer for other output during the work (e.g. a
// benchmark's own lines): on a terminal it moves the bar out of the way and
// redraws it below what was written.
func (t *Tracker) Writer() io.Writer {
	if t == nil {
		return io.Discard
	}
	return writerFunc(func(p []byte) (int, error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.w == nil {
			return len(p), nil
		}
		if t.tty && t.drawn {
			fmt.Fprint(t.w, "\r\033[K")
			t.drawn = false
		}
		n, err := t.w.Write(p)
		if t.tty && !t.finished && strings.HasSuffix(string(p), "\n") {
			t.drawBar()
		}
		return n, err
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

const barWidth = 30

// drawBar redraws the bar on the terminal's current line. Callers hold mu.
func (t *Tracker) drawBar() {
	var bar string
	if t.total > 0 {
		filled := int(min(t.done, t.total) * barWidth / t.total)
		bar = fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("=", filled), strings.Repeat(" ", barWidth-filled), t.done, t.total)
	} else {
		bar = fmt.Sprintf("%d", t.done)
	}
	note := t.note
	if len(note) > 40 {
		note = note[:39] + "…"
	}
	fmt.Fprintf(t.w, "\r\033[K%s %s %s %s", t.label, bar, t.elapsed(), note)
	t.drawn = true
}

// line writes one plain line or log record. Callers hold mu.
func (t *Tracker) line(final bool) {
	count := fmt.Sprintf("%d", t.done)
	if t.total > 0 {
		count = fmt.Sprintf("%d/%d", t.done, t.total)
	}
	state := "progress"
	if final {
		state = "done"
	}
	if t.log != nil {
		attrs := []any{"done", t.done, "elapsed", t.elapsed()}
		if t.total > 0 {
			attrs = append(attrs, "total", t.total)
		}
		if t.note != "" {
			attrs = append(attrs, "last", t.note)
		}
		t.log.Info(t.label+" "+state, attrs...)
		return
	}
	if t.w == nil {
		return
	}
	msg := fmt.Sprintf("%s: %s %s (%s)", t.label, state, count, t.elapsed())
	if t.note != "" {
		msg += " " + t.note
	}
	fmt.Fprintln(t.w, msg)
}

func (t *Tracker) elapsed() string {
	return t.now().Sub(t.started).Round(100 * time.Millisecond).String()
}
