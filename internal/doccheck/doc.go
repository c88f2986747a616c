// Package doccheck holds tests that keep the README true to the code: every
// Go snippet in README.md is an excerpt of an Example that compiles and
// runs in go test, every YAML config in it valid, and its config reference
// the one checked against the schema. It has no non-test code beyond this
// comment.
package doccheck
