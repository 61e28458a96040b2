package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// SnapshotVersion is the snapshot format this package writes and reads.
const SnapshotVersion = 1

// maxRecordSize bounds one snapshot record when reading.
const maxRecordSize = 64 << 20

// snapshot is the state at one log index, captured by Snapshot and
// written out by Persist (see capture).
type snapshot struct{ c *capture }

// Snapshot captures the state for raft and returns at once; Persist writes
// it out. raft calls Snapshot on the goroutine that applies entries, so
// nothing is applied while it runs: it does only what must see the state
// as it is now and leaves encoding the bulk to Persist, which runs beside
// new applies (see capture; BENCHMARKS.md, "Snapshots without a pause").
// The format is a header record then typed records (see snapshot.proto),
// each length-delimited, in a deterministic order: two replicas with the
// same log produce byte-identical snapshots.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	c, err := f.capture()
	if err != nil {
		return nil, err
	}
	return &snapshot{c: c}, nil
}

// Persist writes the snapshot to the sink, cancelling it on any error.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.c.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return sink.Close()
}

// Release drops the captured state.
func (s *snapshot) Release() { s.c = nil }

// WriteSnapshot writes the state to w in the snapshot format.
func (f *FSM) WriteSnapshot(w io.Writer) error {
	c, err := f.capture()
	if err != nil {
		return err
	}
	return c.writeTo(w)
}

// capture is the state at one index, taken under the apply lock in a form
// that later applies cannot change:
//   - the header, the merchants (with their groups, agents and open
//     sessions) and the recently ended sessions are encoded at once: they
//     are objects that applies change in place (an ended session is never
//     changed again, but it is cheap to encode: at most MaxEnded of them).
//     A merchant's open sessions are encoded as its session map yields
//     them, each noted with its id; writeTo puts them in id order, so the
//     map's order never reaches the snapshot;
//   - the dedup table's two generations are views (dedupGen.view): their
//     entries and arena are only appended to, and a dropped generation
//     gets new ones;
//   - the event log is a view of its ring, whose blocks later applies only
//     append to (eventRing).
//
// Sorting the open sessions and the dedup keys, and encoding the dedup
// records and the events — most of a busy shard's snapshot — is left to
// writeTo.
type capture struct {
	head     []byte   // encoded records: header, merchants and sessions, ended sessions
	spans    []span   // head's records, in head's order
	sessions [][2]int // runs spans[i:j] of one merchant's sessions, for writeTo to sort by id
	dedupOld dedupGen // views (dedupGen.view)
	dedupCur dedupGen
	events   eventRing // a view (eventRing.view)
}

// span is one record of capture.head: head[off:end], and the session id of
// a session record.
type span struct {
	id       string
	off, end int
}

func (f *FSM) capture() (*capture, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c := &capture{}
	put := func(id string, r *pb.SnapshotRecord) (err error) {
		off := len(c.head)
		if c.head, err = appendRecord(c.head, r); err != nil {
			return err
		}
		c.spans = append(c.spans, span{id: id, off: off, end: len(c.head)})
		return nil
	}
	hdr := &pb.SnapshotHeader{Version: SnapshotVersion, Shard: f.cfg.Shard, NowMs: f.now,
		QueueSeq: f.queueSeq, EventSeq: f.eventSeq, LastIndex: f.lastIndex}
	if err := put("", &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Header{Header: hdr}}); err != nil {
		return nil, err
	}
	for _, mid := range sortedKeys(f.merchants) {
		m := f.merchants[mid]
		rec := &pb.MerchantRecord{MerchantId: m.id, Settings: m.settings, Stats: m.stats}
		for _, gid := range sortedKeys(m.groups) {
			rec.Groups = append(rec.Groups, m.groups[gid].cfg)
		}
		for _, aid := range sortedKeys(m.agents) {
			a := m.agents[aid]
			rec.Agents = append(rec.Agents, &pb.AgentRecord{Config: a.cfg, Status: a.status})
		}
		if err := put("", &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Merchant{Merchant: rec}}); err != nil {
			return nil, err
		}
		first := len(c.spans)
		for _, s := range m.sessions { // any order: writeTo sorts the run
			if err := put(s.SessionId, &pb.SnapshotRecord{Record: &pb.SnapshotRecord_Session{Session: &s.Session}}); err != nil {
				return nil, err
			}
		}
		c.sessions = append(c.sessions, [2]int{first, len(c.spans)})
	}
	var bad error
	f.ended.each(func(merchant, session, enc []byte) bool {
		if f.merchants[string(merchant)] == nil {
			bad = fmt.Errorf("ended session %q of unknown merchant %q kept", session, merchant)
			return false
		}
		off := len(c.head)
		c.head = appendEndedRecord(c.head, enc)
		c.spans = append(c.spans, span{off: off, end: len(c.head)})
		return true
	})
	if bad != nil {
		return nil, bad
	}
	c.dedupOld = f.dedup.old.view()
	c.dedupCur = f.dedup.cur.view()
	c.events = f.events.view()
	return c, nil
}

// writeTo writes the captured state to w in the snapshot format. It reads
// only what capture copied, so it may run while the FSM applies entries.
// It sorts the captured session runs in place, so two calls on one capture
// must not overlap.
func (c *capture) writeTo(w io.Writer) error {
	for _, run := range c.sessions {
		slices.SortFunc(c.spans[run[0]:run[1]], func(a, b span) int { return strings.Compare(a.id, b.id) })
	}
	bw := bufio.NewWriter(w)
	for _, sp := range c.spans {
		if _, err := bw.Write(c.head[sp.off:sp.end]); err != nil {
			return err
		}
	}
	records := uint64(len(c.spans))
	rw := recordWriter{w: bw}
	put := func(r *pb.SnapshotRecord) error {
		records++
		return rw.write(r)
	}
	err := dedupEach(&c.dedupOld, &c.dedupCur, func(k dedupKey, timeMs int64, result []byte, older bool) error {
		res := &pb.Result{}
		if err := res.UnmarshalVT(result); err != nil {
			return fmt.Errorf("decoding the remembered result of %v: %w", k, err)
		}
		return put(&pb.SnapshotRecord{Record: &pb.SnapshotRecord_Dedup{Dedup: &pb.DedupRecord{
			MerchantId: k.merchant, RequestId: k.request, TimeMs: timeMs, Result: res, Older: older}}})
	})
	if err != nil {
		return err
	}
	for i := 0; i < c.events.len(); i++ {
		e := c.events.at(i)
		if err := put(&pb.SnapshotRecord{Record: &pb.SnapshotRecord_Event{Event: e.proto()}}); err != nil {
			return err
		}
	}
	if err := rw.write(&pb.SnapshotRecord{Record: &pb.SnapshotRecord_End{End: &pb.SnapshotEnd{Records: records}}}); err != nil {
		return err
	}
	return bw.Flush()
}

// Restore replaces the whole state with a snapshot's; what the FSM held
// before is discarded. On error the FSM is left empty.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.ReadSnapshot(rc)
}

// ReadSnapshot replaces the state with the snapshot read from r.
func (f *FSM) ReadSnapshot(r io.Reader) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reset()
	if err := f.readSnapshot(bufio.NewReaderSize(r, 1<<16)); err != nil {
		f.reset()
		return fmt.Errorf("fsm: restore: %w", err)
	}
	close(f.notify)
	f.notify = make(chan struct{})
	return nil
}

func (f *FSM) readSnapshot(br *bufio.Reader) error {
	rr := recordReader{br: br}
	var m *merchant
	first := true
	var records uint64
	for {
		b, err := rr.raw()
		if errors.Is(err, io.EOF) {
			if first {
				return errors.New("empty snapshot")
			}
			return errors.New("snapshot cut short: no end record")
		}
		if err != nil {
			return err
		}
		if !first {
			s, ended, ok, err := sessionRecord(b)
			if err != nil {
				return err
			}
			if ok {
				records++
				if err := f.restoreSessionRecord(m, s, ended); err != nil {
					return err
				}
				continue
			}
		}
		rec := &pb.SnapshotRecord{}
		if err := rec.UnmarshalVT(b); err != nil {
			return err
		}
		if end := rec.GetEnd(); end != nil {
			if end.Records != records {
				return fmt.Errorf("snapshot has %d records, its end record says %d", records, end.Records)
			}
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				return errors.New("data after the snapshot's end record")
			}
			break
		}
		records++
		if first {
			h := rec.GetHeader()
			if h == nil {
				return errors.New("snapshot does not start with a header")
			}
			if h.Version != SnapshotVersion {
				return fmt.Errorf("snapshot version %d; this build reads %d", h.Version, SnapshotVersion)
			}
			f.now, f.queueSeq, f.eventSeq, f.lastIndex = h.NowMs, h.QueueSeq, h.EventSeq, h.LastIndex
			first = false
			continue
		}
		switch r := rec.Record.(type) {
		case *pb.SnapshotRecord_Merchant:
			for _, ar := range r.Merchant.Agents {
				if ar.Config == nil {
					return fmt.Errorf("merchant %q: agent record without a configuration", r.Merchant.MerchantId)
				}
			}
			m = f.restoreMerchant(r.Merchant)
		// Session and ended records come here only when they carry more
		// than their one field (valid, not written by this package);
		// sessionRecord decodes the others.
		case *pb.SnapshotRecord_Session:
			s := &session{}
			proto.Merge(&s.Session, r.Session)
			if err := f.restoreSessionRecord(m, s, false); err != nil {
				return err
			}
		case *pb.SnapshotRecord_Ended:
			s := &session{}
			proto.Merge(&s.Session, r.Ended)
			if err := f.restoreSessionRecord(m, s, true); err != nil {
				return err
			}
		case *pb.SnapshotRecord_Dedup:
			f.dedup.restore(dedupKey{merchant: r.Dedup.MerchantId, request: r.Dedup.RequestId}, r.Dedup.TimeMs, r.Dedup.Result, r.Dedup.Older)
		case *pb.SnapshotRecord_Event:
			e := eventFromProto(r.Event)
			if !eventIDsFit(&e) {
				return fmt.Errorf("event %d: an id is over %d bytes", e.seq, maxEventID)
			}
			f.events.push(e, f.cfg.MaxEvents)
		default:
			return fmt.Errorf("unknown snapshot record %T", rec.Record)
		}
	}
	// Agents are indexed once their sessions (and so their loads) are back.
	for _, mid := range sortedKeys(f.merchants) {
		m := f.merchants[mid]
		for _, gid := range sortedKeys(m.groups) {
			m.rebuildIndexes(m.groups[gid])
		}
		for _, aid := range sortedKeys(m.agents) {
			m.reindex(m.agents[aid])
		}
		if m.stats.Surge != pb.SurgeLevel_SURGE_LEVEL_NORMAL {
			f.elevated[m.id] = true
		}
	}
	return nil
}

func (f *FSM) restoreMerchant(r *pb.MerchantRecord) *merchant {
	m := newMerchant(r.MerchantId)
	m.settings = r.Settings
	if m.settings == nil {
		m.settings = &pb.MerchantSettings{}
	}
	m.w = effectiveWeights(m.settings.Weights)
	if r.Stats != nil {
		m.stats = r.Stats
	}
	for _, g := range r.Groups {
		m.groups[g.GroupId] = newGroup(g)
	}
	for _, ar := range r.Agents {
		a := &agent{id: ar.Config.AgentId, cfg: ar.Config, status: ar.Status,
			groups: map[string]*pb.AgentGroup{}}
		a.limit = a.cfg.Limit
		if a.limit == 0 {
			a.limit = m.defaultLimit()
		}
		for _, ag := range a.cfg.Groups {
			a.groups[ag.GroupId] = ag
			if g := m.groups[ag.GroupId]; g != nil {
				g.members[a.id] = a
			}
		}
		m.agents[a.id] = a
	}
	f.merchants[m.id] = m
	return m
}

// restoreSessionRecord puts back an open session of merchant m (the last
// merchant record read) or, if ended, an ended session of any merchant.
func (f *FSM) restoreSessionRecord(m *merchant, s *session, ended bool) error {
	if ended {
		om := f.merchants[s.MerchantId]
		if om == nil {
			return fmt.Errorf("ended session %q of unknown merchant %q", s.SessionId, s.MerchantId)
		}
		if f.ended.has(om.id, s.SessionId) {
			return fmt.Errorf("ended session %q twice", s.SessionId)
		}
		f.keepEnded(s)
		return nil
	}
	if m == nil || s.MerchantId != m.id {
		return fmt.Errorf("session %q out of place", s.SessionId)
	}
	return f.restoreSession(m, s)
}

func (f *FSM) restoreSession(m *merchant, s *session) error {
	m.sessions[s.SessionId] = s
	m.byBuyer[s.BuyerId] = s
	if g := m.groups[s.GroupId]; g != nil {
		g.active++
	}
	switch s.State {
	case pb.SessionState_SESSION_STATE_QUEUED:
		g := m.groups[s.GroupId]
		if g == nil {
			return fmt.Errorf("queued session %q in unknown group %q", s.SessionId, s.GroupId)
		}
		g.queue.ReplaceOrInsert(s)
		if s.DeadlineMs > 0 {
			f.waits.ReplaceOrInsert(timer{at: s.DeadlineMs, s: s})
		}
	case pb.SessionState_SESSION_STATE_ASSIGNED:
		a := m.agents[s.AgentId]
		if a == nil {
			return fmt.Errorf("session %q assigned to unknown agent %q", s.SessionId, s.AgentId)
		}
		a.assigned.add(s)
		a.load++
	}
	if m.settings.IdleTimeoutMs > 0 && (s.State == pb.SessionState_SESSION_STATE_BOT || s.State == pb.SessionState_SESSION_STATE_ASSIGNED) {
		s.idleAt = s.LastActivityMs + m.settings.IdleTimeoutMs
		f.idles.ReplaceOrInsert(timer{at: s.idleAt, s: s})
	}
	return nil
}
