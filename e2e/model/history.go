// Package model is the chaos suite's record of what clients did and saw (a
// History of Ops) and the sequential specification those Ops are checked
// against for linearizability with porcupine (see Model).
//
// An Op is one logical call: a request sent with one request id, retried
// with that id until the cluster gave a definite answer. Its interval runs
// from the first attempt to the answer. An Op whose answer never came is
// indeterminate: Output.Unknown, Return == Never. It may or may not have
// been applied; the checker lets it take effect at any point after its call.
package model

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"sync"
	"time"
)

// Kind names an operation.
type Kind string

// The operations of the chaos traffic.
const (
	Consult     Kind = "consult"
	Escalate    Kind = "escalate"
	Transfer    Kind = "transfer"
	End         Kind = "end"
	FirstReply  Kind = "first-reply"
	PullNext    Kind = "pull-next"
	SetStatus   Kind = "set-status"
	SetLimit    Kind = "set-limit"
	GetPosition Kind = "get-position" // a linearizable read of a buyer's session
	ListAgents  Kind = "list-agents"  // a linearizable read of every agent's load
)

// Read reports whether ops of kind k change nothing.
func (k Kind) Read() bool { return k == GetPosition || k == ListAgents }

// Input is a request as the client sent it. Enumerations are the short
// names of the protobuf values ("ONLINE", "AGENT_ENDED").
type Input struct {
	Kind      Kind   `json:"kind"`
	Merchant  string `json:"merchant"`
	RequestID string `json:"request_id,omitempty"`
	Buyer     string `json:"buyer,omitempty"`
	// AfterSales: the consult comes from an after-sales page (routing).
	AfterSales bool   `json:"after_sales,omitempty"`
	UserLevel  uint32 `json:"user_level,omitempty"`
	Session    string `json:"session,omitempty"`
	// Agent: pull-next, set-status and set-limit's agent; a transfer's target.
	Agent string `json:"agent,omitempty"`
	// Group: a transfer's target group.
	Group  string `json:"group,omitempty"`
	Reason string `json:"reason,omitempty"` // end
	Status string `json:"status,omitempty"` // set-status
	Limit  uint32 `json:"limit,omitempty"`  // set-limit
}

// Output is the answer: an error kind, or the Result's fields.
type Output struct {
	// Unknown: no answer came; the Op is indeterminate.
	Unknown bool `json:"unknown,omitempty"`
	// Err is the kind of a definite error: not_found, conflict, limit,
	// invalid, or other.
	Err      string `json:"err,omitempty"`
	ErrField string `json:"err_field,omitempty"`
	// Outcome: BOT, ASSIGNED, QUEUED, BUSY, ENDED, EXISTING, NONE.
	Outcome  string `json:"outcome,omitempty"`
	Session  string `json:"session,omitempty"`
	State    string `json:"state,omitempty"` // BOT, QUEUED, ASSIGNED, ENDED
	Agent    string `json:"agent,omitempty"`
	Group    string `json:"group,omitempty"`
	Buyer    string `json:"buyer,omitempty"`
	Position uint32 `json:"position,omitempty"`
	// Agents: list-agents' answer, sorted by id.
	Agents []AgentView `json:"agents,omitempty"`
}

// AgentView is one agent as list-agents saw it.
type AgentView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Limit  uint32 `json:"limit"`
	Load   uint32 `json:"load"`
}

// Never is the Return of an indeterminate Op.
const Never = math.MaxInt64

// Op is one logical call in a History.
type Op struct {
	ID     int    `json:"id"`
	Client int    `json:"client"`
	Shard  uint32 `json:"shard"`
	Input  Input  `json:"input"`
	Output Output `json:"output"`
	// Call and Return are nanoseconds since the History's start; Return is
	// Never when no answer came.
	Call   int64 `json:"call_ns"`
	Return int64 `json:"return_ns"`
	// Attempts: calls made with the Op's request id (a call retries
	// internally too; this counts the traffic's own tries).
	Attempts int `json:"attempts,omitempty"`
	// Error is the text of the last error, for people reading a report.
	Error string `json:"error,omitempty"`
}

// Definite reports whether the Op got an answer.
func (o *Op) Definite() bool { return !o.Output.Unknown }

// OK reports whether the Op got an answer without an error (BUSY is an
// answer).
func (o *Op) OK() bool { return !o.Output.Unknown && o.Output.Err == "" }

// History is the record of a run. It is safe for concurrent use.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewHistory starts a History now.
func NewHistory() *History { return &History{start: time.Now()} }

// Start is when the History began.
func (h *History) Start() time.Time { return h.start }

// Now is the time since the History began, in nanoseconds.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// At converts a History time to wall time.
func (h *History) At(ns int64) time.Time { return h.start.Add(time.Duration(ns)) }

// Add records an Op and returns its id.
func (h *History) Add(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops)
	h.ops = append(h.ops, op)
	return op.ID
}

// Ops returns a copy of the Ops, in the order they were added.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Len is the number of Ops.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// WriteJSON writes the Ops as a JSON array.
func (h *History) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(h.Ops())
}

// FromOps makes a History of ops (tests of the checker build their own).
func FromOps(ops []Op) *History {
	h := NewHistory()
	for _, op := range ops {
		h.Add(op)
	}
	return h
}
