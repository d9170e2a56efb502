package e2e

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills a child when the test binary dies (a timeout panic, a
// Ctrl-C), so no broker or webhookd outlives a test run.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
