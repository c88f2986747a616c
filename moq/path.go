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

// CleanPath normalises a broadcast path: leading and trailing '/' are
// removed and runs of '/' collapse into one. It returns p itself, without
// allocating, when p is already clean.
func CleanPath(p string) string {
	if isCleanPath(p) {
		return p
	}
	var sb strings.Builder
	sb.Grow(len(p))
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('/')
		}
		sb.WriteString(seg)
	}
	return sb.String()
}

func isCleanPath(p string) bool {
	if p == "" {
		return true
	}
	return p[0] != '/' && p[len(p)-1] != '/' && !strings.Contains(p, "//")
}

// HasPathPrefix reports whether prefix matches path on a segment boundary:
// prefix is empty, equal to path, or path continues with '/' after it. So
// "foo" matches "foo/bar" but not "foobar". Both arguments must be clean
// (see CleanPath); comparison is byte-wise and case-sensitive.
func HasPathPrefix(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// PathSuffix returns path with prefix and the '/' after it removed, or "" if
// they are equal. The caller must ensure HasPathPrefix(path, prefix).
func PathSuffix(path, prefix string) string {
	if prefix == "" {
		return path
	}
	if len(path) <= len(prefix) {
		return ""
	}
	return path[len(prefix)+1:]
}

// JoinPath joins two clean paths with '/', or returns the other one when
// either is empty.
func JoinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "/" + b
}
