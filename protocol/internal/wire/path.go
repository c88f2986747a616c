package wire

import "strings"

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
