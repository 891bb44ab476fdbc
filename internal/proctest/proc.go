package proctest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Proc is a child OS process whose stdout and stderr go to files in a log
// directory. It is killed (SIGKILL) when the test ends if still running,
// and the tail of its stderr is logged if the test failed.
type Proc struct {
	Name               string
	Cmd                *exec.Cmd
	StartedAt, EndedAt time.Time // EndedAt is set once the process exited

	t                testing.TB
	stdoutF, stderrF string
	stdoutW, stderrW *os.File
	done             chan struct{} // closed once the process has exited
	state            *os.ProcessState
}

// Start starts path with args and the environment env (nil: none), its
// output in logDir/name.stdout and logDir/name.stderr.
func Start(t testing.TB, logDir, name, path string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, Name: name, done: make(chan struct{}),
		stdoutF: filepath.Join(logDir, name+".stdout"), stderrF: filepath.Join(logDir, name+".stderr")}
	var err error
	if p.stdoutW, err = os.Create(p.stdoutF); err != nil {
		t.Fatal(err)
	}
	if p.stderrW, err = os.Create(p.stderrF); err != nil {
		t.Fatal(err)
	}
	p.Cmd = exec.Command(path, args...)
	p.Cmd.Env = env
	p.Cmd.Stdout, p.Cmd.Stderr = p.stdoutW, p.stderrW
	// A safety net if the test binary itself dies: the kernel kills the
	// children.
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.StartedAt = time.Now()
	t.Logf("started %s (pid %d): %s %s", name, p.Cmd.Process.Pid, filepath.Base(path), strings.Join(args, " "))
	go func() {
		_ = p.Cmd.Wait()
		p.state = p.Cmd.ProcessState
		p.EndedAt = time.Now()
		_ = p.stdoutW.Close()
		_ = p.stderrW.Close()
		close(p.done)
	}()
	// Cleanups run last-registered first: kill, then dump.
	t.Cleanup(func() {
		if t.Failed() {
			p.Dump()
		}
	})
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not die after SIGKILL", name, p.Cmd.Process.Pid)
			}
		}
	})
	return p
}

// Stderr returns everything the process wrote to stderr so far.
func (p *Proc) Stderr() string {
	b, _ := os.ReadFile(p.stderrF)
	return string(b)
}

// Stdout returns everything the process wrote to stdout so far.
func (p *Proc) Stdout() string {
	b, _ := os.ReadFile(p.stdoutF)
	return string(b)
}

// StderrFile is the file holding the process's stderr.
func (p *Proc) StderrFile() string { return p.stderrF }

// Dump logs the tail of the process's stderr (the whole of it stays in its
// file).
func (p *Proc) Dump() {
	const tail = 8 << 10
	out := p.Stderr()
	if len(out) > tail {
		out = "[…]" + out[len(out)-tail:]
	}
	p.t.Logf("---- tail of %s's stderr (%s; all of it in %s) ----\n%s", p.Name, p.DescribeExit(), p.stderrF, out)
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State is how the process ended; nil while it runs.
func (p *Proc) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.state
}

// DescribeExit says how the process ended, or "running".
func (p *Proc) DescribeExit() string {
	if !p.Exited() {
		return "running"
	}
	return p.state.String()
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to %s: %v", sig, p.Name, err)
	}
}

// WaitExit waits for the process to exit and returns its exit code, or -1
// and the signal if a signal ended it.
func (p *Proc) WaitExit(timeout time.Duration) (code int, sig syscall.Signal) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.Name, timeout)
	}
	ws := p.state.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return -1, ws.Signal()
	}
	return ws.ExitStatus(), 0
}

// Stop sends SIGTERM and requires a clean exit (code 0) within timeout.
func (p *Proc) Stop(timeout time.Duration) {
	p.t.Helper()
	p.Signal(syscall.SIGTERM)
	if code, _ := p.WaitExit(timeout); code != 0 {
		p.t.Fatalf("%s exited with %s after SIGTERM, want 0", p.Name, p.DescribeExit())
	}
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() {
	p.t.Helper()
	p.Signal(syscall.SIGKILL)
	p.WaitExit(10 * time.Second)
}
