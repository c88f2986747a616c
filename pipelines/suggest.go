package pipelines

import (
	"fmt"
	"strings"
)

// unknownMsg says that name is not one of valid, suggesting the closest
// valid name when one is close enough to be a typo, or listing them all.
func unknownMsg(what, name string, valid []string) string {
	if s := closest(name, valid); s != "" {
		return fmt.Sprintf("unknown %s %q (did you mean %q?)", what, name, s)
	}
	if len(valid) == 0 {
		return fmt.Sprintf("unknown %s %q (none are allowed here)", what, name)
	}
	return fmt.Sprintf("unknown %s %q (valid: %s)", what, name, strings.Join(valid, ", "))
}

// closest returns the candidate nearest to word when it is a plausible
// misspelling (a small edit distance relative to the word's length), or
// "". Comparison ignores case, so "Segment" finds "segment".
func closest(word string, candidates []string) string {
	best, bestDist := "", -1
	w := strings.ToLower(word)
	for _, c := range candidates {
		d := editDistance(w, strings.ToLower(c))
		if d <= maxTypos(len([]rune(c))) && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// maxTypos is how many edits a word of n letters may be away from a
// candidate and still be suggested: short keys need a close match or
// everything would suggest everything.
func maxTypos(n int) int {
	switch {
	case n <= 3:
		return 1
	case n <= 8:
		return 2
	default:
		return 3
	}
}

// editDistance is the optimal-string-alignment Damerau-Levenshtein
// distance: insertions, deletions, substitutions and transpositions of
// adjacent letters each cost one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// Three rows suffice: the transposition looks two rows back.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
