// Package rawsock makes raw system calls on a Go socket through the
// runtime's poller: what the RTMP source's TCP reads and the RTP source's
// UDP reads use on Linux (Call).
//
// Why: a Go read enters the system call through the runtime's
// entersyscall, which wakes its monitor thread (sysmon) when the process
// was idle; sysmon then polls every 20 µs until every processor is idle
// again. A live stream's packets arrive one at a time, hundreds a second,
// so each paid for that wake-up and a few polls on top of the read: about
// a tenth of what ingesting a stream costs. A Go socket is non-blocking,
// so the raw call never blocks and needs none of what the runtime does
// around a system call that might; deadlines and Close still work, since
// waiting is left to the poller.
package rawsock
