package shardtest

import (
	"log/slog"
	"time"

	"github.com/frontdeskhq/frontdesk/shard"
)

// Option changes how NewCluster builds its nodes.
type Option func(*options)

type options struct {
	timing    shard.RaftTiming
	tick      time.Duration
	logLevel  slog.Level
	configure func(*shard.HostConfig)
	bootstrap bool
}

// WithTiming sets the Raft timings (default shard.FastTiming()).
func WithTiming(t shard.RaftTiming) Option { return func(o *options) { o.timing = t } }

// WithTickInterval sets HostConfig.TickInterval (default: the Host's, 1s;
// negative: leaders propose no ticks, so the log only grows by the test's
// own proposals).
func WithTickInterval(d time.Duration) Option { return func(o *options) { o.tick = d } }

// WithLogLevel sets the level of logs written to t.Log (default Warn).
func WithLogLevel(l slog.Level) Option { return func(o *options) { o.logLevel = l } }

// WithConfig lets f change each node's HostConfig last, e.g. the snapshot
// settings or the store.
func WithConfig(f func(*shard.HostConfig)) Option { return func(o *options) { o.configure = f } }

// WithoutBootstrap leaves every shard unbootstrapped (and so leaderless).
func WithoutBootstrap() Option { return func(o *options) { o.bootstrap = false } }
