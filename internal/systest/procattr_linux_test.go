package systest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL the child if the test binary dies
// (a panic, a timeout), so that no broker or worker outlives the tests.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
