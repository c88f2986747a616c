package wire

// GroupBound is an optional group sequence in its wire form: 0 means none
// (for a start group: the latest; for an end group: unbounded), any other
// value is the sequence plus one. The zero value is "none".
type GroupBound uint64

// BoundAt returns the bound for group sequence seq. seq must be below
// MaxVarint so that the bound fits in a varint.
func BoundAt(seq uint64) GroupBound {
	return GroupBound(seq + 1)
}

// Sequence returns the group sequence of g, or false if g is none.
func (g GroupBound) Sequence() (uint64, bool) {
	if g == 0 {
		return 0, false
	}
	return uint64(g) - 1, true
}

// Response types that precede every response on a Lite03/Lite04 subscribe
// stream. Lite01 and Lite02 have only SUBSCRIBE_OK, with no type.
const (
	ResponseOK   uint64 = 0
	ResponseDrop uint64 = 1
)

// Subscribe is the first message on a subscribe stream. ID is chosen by the
// subscriber and identifies the subscription on group streams. Priority is
// higher for more important tracks. Ordered (oldest group first),
// MaxLatencyMs (0 = unlimited), Start and End exist in Lite03 and Lite04
// only.
type Subscribe struct {
	ID           uint64
	Broadcast    string
	Track        string
	Priority     uint8
	Ordered      bool
	MaxLatencyMs uint64
	Start, End   GroupBound
}

// SubscribeOK accepts a subscription. Lite01 carries only Priority, Lite02
// carries nothing, Lite03 and Lite04 carry every field.
type SubscribeOK struct {
	Priority     uint8
	Ordered      bool
	MaxLatencyMs uint64
	Start, End   GroupBound
}

// SubscribeDrop (Lite03 and Lite04) tells the subscriber that the groups
// Start to End (inclusive, absolute sequences) will not be delivered, for
// the reason in Code (an ErrorCode value).
type SubscribeDrop struct {
	Start, End uint64
	Code       uint64
}

// SubscribeUpdate changes the parameters of a subscription. Lite01 and
// Lite02 carry only Priority; Lite03 and Lite04 carry every field.
type SubscribeUpdate struct {
	Priority     uint8
	Ordered      bool
	MaxLatencyMs uint64
	Start, End   GroupBound
}

// AppendSubscribe appends a length-prefixed SUBSCRIBE message (without the
// stream type).
func AppendSubscribe(b []byte, v Version, m Subscribe) []byte {
	mustSupport("subscribe", v, true)
	b, start := beginMessage(b)
	b = AppendVarint(b, m.ID)
	b = AppendString(b, m.Broadcast)
	b = AppendString(b, m.Track)
	b = append(b, m.Priority)
	if !v.legacy() {
		b = appendBool(b, m.Ordered)
		b = AppendVarint(b, m.MaxLatencyMs)
		b = AppendVarint(b, uint64(m.Start))
		b = AppendVarint(b, uint64(m.End))
	}
	return endMessage(b, start)
}

// DecodeSubscribe decodes a SUBSCRIBE body. The broadcast path is normalised
// with CleanPath; the track name is not.
func DecodeSubscribe(v Version, body []byte) (Subscribe, error) {
	const name = "subscribe"
	if err := checkVersion(name, v, true); err != nil {
		return Subscribe{}, err
	}
	p := newParser(name, body)
	var m Subscribe
	m.ID = p.varint("id")
	m.Broadcast = p.path("broadcast")
	m.Track = p.string("track")
	m.Priority = p.u8("priority")
	if !v.legacy() {
		m.Ordered = p.bool("ordered")
		m.MaxLatencyMs = p.varint("max latency")
		m.Start = GroupBound(p.varint("start group"))
		m.End = GroupBound(p.varint("end group"))
	}
	if err := p.finish(); err != nil {
		return Subscribe{}, err
	}
	return m, nil
}

// AppendSubscribeOK appends a SUBSCRIBE_OK response. In Lite03 and Lite04 it
// is preceded by the response type ResponseOK; in Lite01 and Lite02 it is
// the bare length-prefixed message.
func AppendSubscribeOK(b []byte, v Version, m SubscribeOK) []byte {
	mustSupport("subscribe ok", v, true)
	if !v.legacy() {
		b = AppendVarint(b, ResponseOK)
	}
	b, start := beginMessage(b)
	switch v {
	case Lite01:
		b = append(b, m.Priority)
	case Lite02:
	default:
		b = appendSubscribeParams(b, m.Priority, m.Ordered, m.MaxLatencyMs, m.Start, m.End)
	}
	return endMessage(b, start)
}

// DecodeSubscribeOK decodes a SUBSCRIBE_OK body. In Lite03 and Lite04 the
// caller has already read the response type.
func DecodeSubscribeOK(v Version, body []byte) (SubscribeOK, error) {
	const name = "subscribe ok"
	if err := checkVersion(name, v, true); err != nil {
		return SubscribeOK{}, err
	}
	p := newParser(name, body)
	var m SubscribeOK
	switch v {
	case Lite01:
		m.Priority = p.u8("priority")
	case Lite02:
	default:
		m.Priority, m.Ordered, m.MaxLatencyMs, m.Start, m.End = parseSubscribeParams(&p)
	}
	if err := p.finish(); err != nil {
		return SubscribeOK{}, err
	}
	return m, nil
}

// AppendSubscribeDrop appends the response type ResponseDrop and a
// length-prefixed SUBSCRIBE_DROP message. It panics unless v is Lite03 or
// Lite04.
func AppendSubscribeDrop(b []byte, v Version, m SubscribeDrop) []byte {
	mustSupport("subscribe drop", v, !v.legacy())
	b = AppendVarint(b, ResponseDrop)
	b, start := beginMessage(b)
	b = AppendVarint(b, m.Start)
	b = AppendVarint(b, m.End)
	b = AppendVarint(b, m.Code)
	return endMessage(b, start)
}

// DecodeSubscribeDrop decodes a SUBSCRIBE_DROP body (Lite03 and Lite04);
// the caller has already read the response type.
func DecodeSubscribeDrop(v Version, body []byte) (SubscribeDrop, error) {
	const name = "subscribe drop"
	if err := checkVersion(name, v, !v.legacy()); err != nil {
		return SubscribeDrop{}, err
	}
	p := newParser(name, body)
	var m SubscribeDrop
	m.Start = p.varint("start")
	m.End = p.varint("end")
	m.Code = p.varint("error code")
	if err := p.finish(); err != nil {
		return SubscribeDrop{}, err
	}
	return m, nil
}

// AppendSubscribeUpdate appends a length-prefixed SUBSCRIBE_UPDATE message.
func AppendSubscribeUpdate(b []byte, v Version, m SubscribeUpdate) []byte {
	mustSupport("subscribe update", v, true)
	b, start := beginMessage(b)
	if v.legacy() {
		b = append(b, m.Priority)
	} else {
		b = appendSubscribeParams(b, m.Priority, m.Ordered, m.MaxLatencyMs, m.Start, m.End)
	}
	return endMessage(b, start)
}

// DecodeSubscribeUpdate decodes a SUBSCRIBE_UPDATE body.
func DecodeSubscribeUpdate(v Version, body []byte) (SubscribeUpdate, error) {
	const name = "subscribe update"
	if err := checkVersion(name, v, true); err != nil {
		return SubscribeUpdate{}, err
	}
	p := newParser(name, body)
	var m SubscribeUpdate
	if v.legacy() {
		m.Priority = p.u8("priority")
	} else {
		m.Priority, m.Ordered, m.MaxLatencyMs, m.Start, m.End = parseSubscribeParams(&p)
	}
	if err := p.finish(); err != nil {
		return SubscribeUpdate{}, err
	}
	return m, nil
}

// appendSubscribeParams appends the fields SUBSCRIBE_OK and SUBSCRIBE_UPDATE
// share in Lite03 and Lite04.
func appendSubscribeParams(b []byte, priority uint8, ordered bool, maxLatencyMs uint64, start, end GroupBound) []byte {
	b = append(b, priority)
	b = appendBool(b, ordered)
	b = AppendVarint(b, maxLatencyMs)
	b = AppendVarint(b, uint64(start))
	return AppendVarint(b, uint64(end))
}

// parseSubscribeParams decodes the fields written by appendSubscribeParams.
func parseSubscribeParams(p *parser) (priority uint8, ordered bool, maxLatencyMs uint64, start, end GroupBound) {
	priority = p.u8("priority")
	ordered = p.bool("ordered")
	maxLatencyMs = p.varint("max latency")
	start = GroupBound(p.varint("start group"))
	end = GroupBound(p.varint("end group"))
	return
}

// Fetch (Lite03 and later, on a stream of type 0x03) requests one group of
// a track; the reply would be frames on the same stream.
type Fetch struct {
	Broadcast string
	Track     string
	Priority  uint8
	Group     uint64
}

// AppendFetch appends a length-prefixed FETCH message (without the stream
// type).
func AppendFetch(b []byte, m Fetch) []byte {
	b, start := beginMessage(b)
	b = AppendString(b, m.Broadcast)
	b = AppendString(b, m.Track)
	b = append(b, m.Priority)
	b = AppendVarint(b, m.Group)
	return endMessage(b, start)
}

// DecodeFetch decodes a FETCH body. The broadcast path is normalised with
// CleanPath.
func DecodeFetch(body []byte) (Fetch, error) {
	p := newParser("fetch", body)
	var m Fetch
	m.Broadcast = p.path("broadcast")
	m.Track = p.string("track")
	m.Priority = p.u8("priority")
	m.Group = p.varint("group")
	if err := p.finish(); err != nil {
		return Fetch{}, err
	}
	return m, nil
}
