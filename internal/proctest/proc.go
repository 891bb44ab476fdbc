package proctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Spec says which process to start and where its output goes.
type Spec struct {
	// Name names the process in messages and its output files.
	Name string
	// Path is the binary; Args its arguments.
	Path string
	Args []string
	// Env is the child's whole environment, as in exec.Cmd: nil is this
	// process's. Environ builds one.
	Env []string
	// LogDir receives the output: stdout in LogDir/Name.stdout, stderr in
	// LogDir/Name.stderr (Name.2.stdout … for a second process of the same
	// name). Start requires it; StartT defaults it to a directory of the
	// test's.
	LogDir string
	// OwnGroup starts the child in a process group of its own, so that a
	// Ctrl-C at the terminal does not reach it before its parent stops it
	// (the bench harness stops its children in order).
	OwnGroup bool
}

// Proc is a child OS process whose stdout and stderr go to files. On
// Linux the kernel kills it (SIGKILL) if its parent dies.
type Proc struct {
	spec             Spec
	cmd              *exec.Cmd
	startedAt        time.Time
	stdoutF, stderrF string
	done             chan struct{} // closed once the process has exited

	// Set before done is closed; read only after.
	waitErr error
	state   *os.ProcessState
	endedAt time.Time
}

// Start starts the process s describes.
func Start(s Spec) (*Proc, error) {
	if s.LogDir == "" {
		return nil, fmt.Errorf("start %s: no log dir", s.Name)
	}
	p := &Proc{spec: s, done: make(chan struct{})}
	stdout, err := p.createOutput()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	stderr, err := os.Create(p.stderrF)
	if err != nil {
		_ = stdout.Close()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p.cmd = exec.Command(s.Path, s.Args...)
	p.cmd.Env = s.Env
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.cmd.SysProcAttr = sysProcAttr(s.OwnGroup)
	if err := p.cmd.Start(); err != nil {
		_ = stdout.Close()
		_ = stderr.Close()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p.startedAt = time.Now()
	go func() {
		p.waitErr = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		p.endedAt = time.Now()
		_ = stdout.Close()
		_ = stderr.Close()
		close(p.done)
	}()
	return p, nil
}

// createOutput creates the stdout file and names both: Name.stdout and
// Name.stderr, or Name.2.stdout and Name.2.stderr if a process of the
// same name wrote to the log dir before, and so on.
func (p *Proc) createOutput() (*os.File, error) {
	for i := 1; ; i++ {
		base := p.spec.Name
		if i > 1 {
			base = fmt.Sprintf("%s.%d", p.spec.Name, i)
		}
		p.stdoutF = filepath.Join(p.spec.LogDir, base+".stdout")
		p.stderrF = filepath.Join(p.spec.LogDir, base+".stderr")
		f, err := os.OpenFile(p.stdoutF, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, os.ErrExist) {
			return f, err
		}
	}
}

// Name is the process's name (Spec.Name).
func (p *Proc) Name() string { return p.spec.Name }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// StartedAt is when the process was started.
func (p *Proc) StartedAt() time.Time { return p.startedAt }

// describe is the command line, for messages.
func (p *Proc) describe() string {
	return strings.TrimSpace(filepath.Base(p.spec.Path) + " " + strings.Join(p.spec.Args, " "))
}

// Stdout returns everything the process wrote to stdout so far.
func (p *Proc) Stdout() string {
	b, _ := os.ReadFile(p.stdoutF)
	return string(b)
}

// Stderr returns everything the process wrote to stderr so far.
func (p *Proc) Stderr() string {
	b, _ := os.ReadFile(p.stderrF)
	return string(b)
}

// StderrFile is the file holding the process's stderr.
func (p *Proc) StderrFile() string { return p.stderrF }

// Tail returns the last n bytes of the process's stderr, for messages.
func (p *Proc) Tail(n int64) string { return tail(p.stderrF, n) }

func tail(file string, n int64) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	prefix := ""
	if st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
		prefix = "[…]"
	}
	b, _ := io.ReadAll(f)
	return prefix + string(b)
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

// Err is how the process ended once it has (exec.Cmd.Wait's error: nil
// for exit status 0), and nil while it runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// DescribeExit says how the process ended, or "running".
func (p *Proc) DescribeExit() string {
	if !p.Exited() {
		return "running"
	}
	if p.state == nil {
		return p.waitErr.Error()
	}
	return p.state.String()
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, p.Name(), err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns its exit
// code, or -1 and the signal if a signal ended it.
func (p *Proc) Wait(timeout time.Duration) (code int, sig syscall.Signal, err error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		return 0, 0, fmt.Errorf("%s did not exit within %v", p.Name(), timeout)
	}
	if p.state == nil {
		return 0, 0, fmt.Errorf("%s: %w", p.Name(), p.waitErr)
	}
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	if !ok {
		return p.state.ExitCode(), 0, nil
	}
	if ws.Signaled() {
		return -1, ws.Signal(), nil
	}
	return ws.ExitStatus(), 0, nil
}

// Stop sends SIGTERM (unless the process has exited already) and requires
// a clean exit, status 0, within grace. A process still running then is
// killed (SIGKILL).
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Exited() {
		if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
	}
	code, sig, err := p.Wait(grace)
	if err != nil {
		_ = p.Kill()
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.Name(), grace)
	}
	if code != 0 || sig != 0 {
		return fmt.Errorf("%s after SIGTERM: %s, want exit status 0", p.Name(), p.DescribeExit())
	}
	return nil
}

// killWait bounds how long a process may take to die after SIGKILL.
const killWait = 10 * time.Second

// Kill sends SIGKILL, unless the process has exited already, and waits
// until it is gone.
func (p *Proc) Kill() error {
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	_, _, err := p.Wait(killWait)
	return err
}

// WaitStdout waits up to timeout until the process's stdout matches re and
// returns the match and its submatches. It fails early if the process
// exits without printing it.
func (p *Proc) WaitStdout(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	var m []string
	_, err := Poll(context.Background(), PollEvery, timeout, fmt.Sprintf("%s to print %q", p.Name(), re), func() (bool, string, error) {
		exited := p.Exited() // before reading: what it printed before exiting is all there
		if m = re.FindStringSubmatch(p.Stdout()); m != nil {
			return true, "", nil
		}
		if exited {
			return false, "", fmt.Errorf("%s exited (%s) without printing %q; stderr:\n%s", p.Name(), p.DescribeExit(), re, p.Tail(4<<10))
		}
		return false, "not on stdout yet", nil
	})
	return m, err
}

// Result is how a process run to completion ended.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status
	Took           time.Duration
}

// Run starts s and waits up to timeout for it to exit (then kills it). A
// process ended by a signal is an error.
func Run(s Spec, timeout time.Duration) (Result, error) {
	p, err := Start(s)
	if err != nil {
		return Result{}, err
	}
	code, sig, err := p.Wait(timeout)
	if err != nil {
		_ = p.Kill()
		return Result{}, err
	}
	r := Result{Stdout: p.Stdout(), Stderr: p.Stderr(), Code: code, Took: p.endedAt.Sub(p.startedAt)}
	if sig != 0 {
		return r, fmt.Errorf("%s: killed by %v; stderr:\n%s", p.Name(), sig, p.Tail(4<<10))
	}
	return r, nil
}

// Environ returns this process's environment without the variables whose
// names start with one of drop, followed by extra.
func Environ(extra []string, drop ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, prefix := range drop {
			if strings.HasPrefix(kv, prefix) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Running returns an error naming the first of procs that has exited, and
// how; nil while all of them run.
func Running(procs ...*Proc) error {
	for _, p := range procs {
		if p.Exited() {
			return fmt.Errorf("%s exited unexpectedly: %s", p.Name(), p.DescribeExit())
		}
	}
	return nil
}
