package shard_test

import (
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/frontdeskhq/frontdesk/shard"
)

// DefaultRaftConfig is what a Host with default settings gives raft, so
// that plain-raft references (fdbench's ceiling) are configured alike.
func TestDefaultRaftConfigIsAHostsDefault(t *testing.T) {
	host, err := shard.RaftConfigOf(shard.HostConfig{NodeID: "n1", DataDir: t.TempDir(), Mux: newMux(t)})
	if err != nil {
		t.Fatalf("RaftConfigOf: %v", err)
	}
	got := shard.DefaultRaftConfig("n1")
	if !reflect.DeepEqual(got, host) {
		t.Errorf("DefaultRaftConfig(n1) = %+v\nwant a default Host's %+v", *got, *host)
	}
	if got.MaxAppendEntries != shard.DefaultMaxAppendEntries {
		t.Errorf("MaxAppendEntries = %d, want %d", got.MaxAppendEntries, shard.DefaultMaxAppendEntries)
	}
	if lan := shard.LANTiming(); got.HeartbeatTimeout != lan.HeartbeatTimeout || got.CommitTimeout != lan.CommitTimeout {
		t.Errorf("timings %v / %v, want LANTiming's %v / %v", got.HeartbeatTimeout, got.CommitTimeout, lan.HeartbeatTimeout, lan.CommitTimeout)
	}
	if err := raft.ValidateConfig(got); err != nil {
		t.Errorf("raft rejects it: %v", err)
	}
}
