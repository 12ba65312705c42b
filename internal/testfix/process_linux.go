package testfix

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill cmd's process when the process that
// started it dies, however it dies: a test binary that crashes (a fatal
// error skips every cleanup) would otherwise leave TrackOps processes
// behind, holding replication slots that keep their databases from being
// dropped.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
