package moq

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ValidatePath is the one check of a broadcast path or track name, for
// every place one enters moqbridge: a peer's ANNOUNCE and SUBSCRIBE, an
// in-process Origin.Publish, a command line. Paths are names, not file
// names, but they end up in logs, URLs and file names (recordings), so
// the bytes that could make those ambiguous or unsafe are refused: invalid
// UTF-8, control characters, "." and ".." segments, and more than
// MaxPathLength bytes. The error wraps ErrInvalidPath and says which rule
// p broke; p is checked as given (Origin.Publish cleans slashes first).
func ValidatePath(p string) error {
	return ValidatePathMax(p, MaxPathLength)
}

// MaxPathLength is the longest path or track name ValidatePath accepts, in
// bytes; a session may set a shorter bound.
const MaxPathLength = 1024

// ValidatePathMax is ValidatePath with another length bound.
func ValidatePathMax(p string, maxLen int) error {
	if len(p) > maxLen {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidPath, len(p), maxLen)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidPath, p)
	}
	for i, r := range p {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return fmt.Errorf("%w: %q has a control character at byte %d", ErrInvalidPath, p, i)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q has a %q segment", ErrInvalidPath, p, seg)
		}
	}
	return nil
}
