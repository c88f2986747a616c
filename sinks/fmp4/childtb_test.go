package fmp4

import (
	"fmt"
	"os"
	"testing"
)

// childTB is the testing.TB of the child recording process: failures end
// the process.
type childTB struct{ testing.TB }

func (*childTB) Helper()                   {}
func (*childTB) Cleanup(func())            {}
func (*childTB) Fatal(args ...any)         { fmt.Fprintln(os.Stderr, args...); os.Exit(2) }
func (*childTB) Fatalf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...); os.Exit(2) }
func (*childTB) Errorf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
