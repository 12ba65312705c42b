package testfix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestChildDiesWithItsParent: a process started through StartProcess does
// not outlive the process that started it, even when that one exits
// without any cleanup (as a crashed test binary does). The parent here is
// this test binary run again, which starts a child and exits at once.
func TestChildDiesWithItsParent(t *testing.T) {
	if os.Getenv("TESTFIX_START_AND_EXIT") != "" {
		p, err := StartProcess(context.Background(), ProcessSpec{Binary: "sleep", Args: []string{"120"}})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println("child", p.cmd.Process.Pid)
		os.Exit(0) // no cleanup runs, as after a fatal error
	}
	t.Parallel()
	parent := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithItsParent$")
	parent.Env = append(os.Environ(), "TESTFIX_START_AND_EXIT=1")
	out, err := parent.Output()
	if err != nil {
		t.Fatalf("parent: %v: %s", err, out)
	}
	var pid int
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "child "); ok {
			pid, _ = strconv.Atoi(rest)
		}
	}
	if pid == 0 {
		t.Fatalf("parent did not start its child: %s", out)
	}
	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a speed assertion
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d still runs after its parent exited", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting to be reaped does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	// The state follows the command name in parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	return err != nil || i < 0 || i+2 >= len(stat) || (stat[i+2] != 'Z' && stat[i+2] != 'X')
}
