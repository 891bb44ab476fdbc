package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Binary is a package to build.
type Binary struct {
	// Pkg is the package: an import path, or a directory such as ".".
	Pkg string
	// Name is the binary's file name; default the last element of Pkg.
	Name string
	// Out receives the binary's path.
	Out *string
	// Race builds it with -race when this process was, so that a
	// child is race-checked when its test is.
	Race bool
}

// Build builds bins into dir with `go build`, the compiler's output on
// stderr.
func Build(dir string, bins ...Binary) error {
	for _, b := range bins {
		name := b.Name
		if name == "" {
			name = path.Base(b.Pkg)
		}
		out := filepath.Join(dir, name)
		args := []string{"build", "-o", out}
		if b.Race && raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, b.Pkg)...)
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = os.Stderr, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.Pkg, err, stderr.String())
		}
		if b.Out != nil {
			*b.Out = out
		}
	}
	return nil
}

// BuildMain is a TestMain's body for a suite of child processes: it
// builds bins into a temporary directory, runs the tests and removes the
// directory, and returns the exit code for os.Exit.
func BuildMain(m interface{ Run() int }, suite string, bins ...Binary) int {
	dir, err := os.MkdirTemp("", "mephisto-"+suite+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", suite, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := Build(dir, bins...); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", suite, err)
		return 1
	}
	return m.Run()
}
