package moq

import "errors"

// Sentinel errors of the in-process data model. They are compared with
// errors.Is, so callers can map them onto moq-lite reset codes (ErrNotFound
// → 13, ErrDuplicate → 12, …); wrap them with %w, never re-create them.
var (
	// ErrNotFound reports that a broadcast or track does not exist.
	ErrNotFound = errors.New("moq: not found")

	// ErrClosed reports that the writer ended the object (or the reader
	// closed its half) in a place where io.EOF would be wrong, for example
	// writing to a closed group or subscribing to an ended broadcast.
	ErrClosed = errors.New("moq: closed")

	// ErrDuplicate reports that something already exists: a cached group
	// sequence, a live track name, or a broadcast already published at a
	// path.
	ErrDuplicate = errors.New("moq: duplicate")

	// ErrGroupDropped reports that a group ended incomplete before its
	// reader finished it: GroupWriter.Abort(nil) delivers it. (Eviction
	// from a track's cache never interrupts a reader that already holds
	// the group.)
	ErrGroupDropped = errors.New("moq: group dropped")

	// ErrInvalidPath reports a broadcast path or track name that
	// ValidatePath refuses.
	ErrInvalidPath = errors.New("moq: invalid path")
)
