package state

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLockedByAnotherProcess: while another process (a worker) has the
// store open, Open says another worker is running and names its pid — it
// does not call the dir corrupt — and Reset refuses, leaving the dir
// intact. The holder is a real child process: Pebble's lock is a POSIX
// record lock, which a process never conflicts with itself on.
func TestLockedByAnotherProcess(t *testing.T) {
	if dir := os.Getenv("MEPHISTO_LOCK_CHILD"); dir != "" {
		lockChild(dir)
		return
	}
	dir := t.TempDir()
	s := open(t, dir)
	b := s.NewBatch()
	b.Set(1, 0, []byte("k"), []byte("v"))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestLockedByAnotherProcess$")
	cmd.Env = append(os.Environ(), "MEPHISTO_LOCK_CHILD="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	opened := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		opened <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-opened:
		if strings.TrimSpace(line) != "open" {
			t.Fatalf("child: %q, want open", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not open the store within 30s")
	}
	pid := strconv.Itoa(cmd.Process.Pid)

	_, err = Open(Options{Dir: dir})
	if !errors.Is(err, ErrLocked) || errors.Is(err, ErrCorrupt) {
		t.Errorf("open while another process holds the store: %v; want ErrLocked, not ErrCorrupt", err)
	} else if msg := err.Error(); !strings.Contains(msg, "another worker is running on this data dir") || !strings.Contains(msg, pid) {
		t.Errorf("open: %q does not say another worker (pid %s) is running on the dir", msg, pid)
	}
	err = Reset(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), pid) {
		t.Errorf("reset while another process holds the store: %v; want ErrLocked naming pid %s", err, pid)
	}
	if !Exists(dir) {
		t.Fatal("reset wiped the dir of a running worker")
	}

	_ = stdin.Close() // the child closes the store and exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s = open(t, dir)
	defer s.Close()
	if v, ok, err := s.Get(1, 0, []byte("k")); err != nil || !ok || string(v) != "v" {
		t.Errorf("after the holder exited: row %q %v %v", v, ok, err)
	}
}

// lockChild opens the store in dir, says so, and holds it until stdin
// closes.
func lockChild(dir string) {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(3)
	}
	os.Stdout.WriteString("open\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := s.Close(); err != nil {
		os.Exit(4)
	}
	os.Exit(0)
}
