package bench

import "fmt"

// stealWarnAt is the CPU steal, in percent, from which a rendered run is
// flagged: beyond it the host, not the build, moves the figures.
const stealWarnAt = 5.0

// stealNote is a progress line's mention of the CPU steal, when known.
func stealNote(p *float64) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf(" (CPU steal %.1f %%)", *p)
}
