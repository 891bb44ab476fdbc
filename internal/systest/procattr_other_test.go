//go:build !linux

package systest

import "os/exec"

// dieWithParent is Linux-only (Pdeathsig); elsewhere the tests' cleanups
// kill the children.
func dieWithParent(*exec.Cmd) {}
