package wire

// Group is the header of a unidirectional group stream: SubscribeID names
// the subscription from its SUBSCRIBE, Sequence is the group sequence. The
// header is followed by frames, each a varint size and that many payload
// bytes, until the stream ends.
type Group struct {
	SubscribeID uint64
	Sequence    uint64
}

// AppendGroupHeader appends the stream type byte UniGroup and the
// length-prefixed GROUP message: everything a group stream starts with.
func AppendGroupHeader(b []byte, m Group) []byte {
	b = append(b, UniGroup)
	b, start := beginMessage(b)
	b = AppendVarint(b, m.SubscribeID)
	b = AppendVarint(b, m.Sequence)
	return endMessage(b, start)
}

// DecodeGroup decodes a GROUP body (after the stream type byte and the
// length).
func DecodeGroup(body []byte) (Group, error) {
	p := newParser("group", body)
	var m Group
	m.SubscribeID = p.varint("subscribe id")
	m.Sequence = p.varint("sequence")
	if err := p.finish(); err != nil {
		return Group{}, err
	}
	return m, nil
}

// AppendFrameHeader appends the varint size that precedes a frame payload
// of size bytes. Zero-length frames are allowed.
func AppendFrameHeader(b []byte, size uint64) []byte {
	return AppendVarint(b, size)
}
