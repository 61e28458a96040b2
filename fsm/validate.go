package fsm

import (
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// Input limits. Every command is checked against them before it touches any
// state; a violation is an ErrInvalid naming the field.
const (
	MaxIDLen           = 128  // bytes in any id, request id, attribute key or value
	MaxAttributes      = 32   // free attributes on a consult
	MaxRules           = 64   // routing rules per merchant
	MaxAgentGroups     = 64   // groups per agent
	MaxQuestionSkills  = 32   // question-type skills per agent group
	MaxLimit           = 1000 // reception limit
	MaxSkill           = 100  // skill level
	MaxWeight          = 100  // agent weight
	MaxRating          = 500  // agent rating (hundredths of a star)
	MaxUserLevel       = 10   // buyer user level
	MaxScoringWeight   = 1000 // any scoring weight
	MaxAgingMs         = 3_600_000
	MaxQueueLength     = 100_000
	MaxDurationMs      = 7 * 24 * 3_600_000 // max wait and idle timeout
	DefaultQueueLength = 1000
	DefaultLimit       = 5
)

// MaxTimeMs bounds a command's time_unix_ms (9999-12-31T23:59:59.999Z), so
// log time plus any deadline or timeout never overflows an int64: an
// overflowed deadline left a timer behind that made a tick loop forever.
const MaxTimeMs = 253_402_300_799_999

func checkID(field, v string) *Error {
	if v == "" {
		return invalid(field, "must not be empty")
	}
	return checkOptID(field, v)
}

func checkOptID(field, v string) *Error {
	if len(v) > MaxIDLen {
		return invalid(field, "is %d bytes, over the limit of %d", len(v), MaxIDLen)
	}
	return nil
}

func checkMax(field string, v, max uint64) *Error {
	if v > max {
		return invalid(field, "is %d, over the maximum of %d", v, max)
	}
	return nil
}

func checkEnum[E ~int32](field string, v E, names map[int32]string, allowZero bool) *Error {
	if _, ok := names[int32(v)]; !ok || (!allowZero && v == 0) {
		return invalid(field, "unknown value %d", int32(v))
	}
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...*Error) *Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// validate checks a command's shape (not its references to state).
func validate(c *pb.Command) *Error {
	if c.TimeUnixMs > MaxTimeMs {
		return invalid("time_unix_ms", "is %d, over the maximum of %d", c.TimeUnixMs, int64(MaxTimeMs))
	}
	if _, isTick := c.Body.(*pb.Command_Tick); !isTick {
		if e := checkID("request_id", c.RequestId); e != nil {
			return e
		}
	}
	switch b := c.Body.(type) {
	case *pb.Command_UpsertMerchant:
		return validateMerchant(b.UpsertMerchant)
	case *pb.Command_DeleteMerchant:
		return checkID("merchant_id", b.DeleteMerchant.MerchantId)
	case *pb.Command_UpsertGroup:
		g := b.UpsertGroup
		return firstErr(checkID("merchant_id", g.MerchantId), checkID("group_id", g.GroupId),
			checkOptID("overflow_group_id", g.OverflowGroupId),
			checkEnum("mode", g.Mode, pb.GroupMode_name, true))
	case *pb.Command_DeleteGroup:
		return firstErr(checkID("merchant_id", b.DeleteGroup.MerchantId), checkID("group_id", b.DeleteGroup.GroupId))
	case *pb.Command_UpsertAgent:
		return validateAgent(b.UpsertAgent)
	case *pb.Command_DeleteAgent:
		return firstErr(checkID("merchant_id", b.DeleteAgent.MerchantId), checkID("agent_id", b.DeleteAgent.AgentId))
	case *pb.Command_SetAgentStatus:
		s := b.SetAgentStatus
		return firstErr(checkID("merchant_id", s.MerchantId), checkID("agent_id", s.AgentId),
			checkEnum("status", s.Status, pb.AgentStatus_name, false))
	case *pb.Command_Consult:
		return validateConsult(b.Consult)
	case *pb.Command_Escalate:
		return firstErr(checkID("merchant_id", b.Escalate.MerchantId), checkID("session_id", b.Escalate.SessionId))
	case *pb.Command_Transfer:
		t := b.Transfer
		if e := firstErr(checkID("merchant_id", t.MerchantId), checkID("session_id", t.SessionId),
			checkOptID("to_agent_id", t.ToAgentId), checkOptID("to_group_id", t.ToGroupId),
			checkOptID("actor_agent_id", t.ActorAgentId)); e != nil {
			return e
		}
		if (t.ToAgentId == "") == (t.ToGroupId == "") {
			return invalid("to_agent_id", "exactly one of to_agent_id and to_group_id must be set")
		}
		return nil
	case *pb.Command_End:
		e := b.End
		if err := firstErr(checkID("merchant_id", e.MerchantId), checkID("session_id", e.SessionId),
			checkOptID("actor_agent_id", e.ActorAgentId)); err != nil {
			return err
		}
		switch e.Reason {
		case pb.EndReason_END_REASON_BOT_RESOLVED, pb.EndReason_END_REASON_AGENT_ENDED, pb.EndReason_END_REASON_BUYER_LEFT:
			return nil
		}
		return invalid("reason", "must be BOT_RESOLVED, AGENT_ENDED or BUYER_LEFT, got %d", int32(e.Reason))
	case *pb.Command_FirstReply:
		return firstErr(checkID("merchant_id", b.FirstReply.MerchantId), checkID("session_id", b.FirstReply.SessionId),
			checkOptID("actor_agent_id", b.FirstReply.ActorAgentId))
	case *pb.Command_PullNext:
		return firstErr(checkID("merchant_id", b.PullNext.MerchantId), checkID("agent_id", b.PullNext.AgentId))
	case *pb.Command_Tick:
		return nil
	case nil:
		return &Error{Code: pb.ErrorCode_ERROR_CODE_UNKNOWN_COMMAND, Field: "body", Message: "command has no body this version knows"}
	}
	return &Error{Code: pb.ErrorCode_ERROR_CODE_UNKNOWN_COMMAND, Field: "body", Message: "unknown command body"}
}

func validateMerchant(m *pb.UpsertMerchant) *Error {
	if e := checkID("merchant_id", m.MerchantId); e != nil {
		return e
	}
	s := m.Settings
	if s == nil {
		return nil // all defaults
	}
	if e := firstErr(
		checkMax("settings.max_queue_length", uint64(s.MaxQueueLength), MaxQueueLength),
		checkMax("settings.default_limit", uint64(s.DefaultLimit), MaxLimit),
		checkOptID("settings.default_group_id", s.DefaultGroupId),
	); e != nil {
		return e
	}
	if s.MaxWaitMs < 0 || s.MaxWaitMs > MaxDurationMs {
		return invalid("settings.max_wait_ms", "must be within 0..%d, got %d", int64(MaxDurationMs), s.MaxWaitMs)
	}
	if s.IdleTimeoutMs < 0 || s.IdleTimeoutMs > MaxDurationMs {
		return invalid("settings.idle_timeout_ms", "must be within 0..%d, got %d", int64(MaxDurationMs), s.IdleTimeoutMs)
	}
	if w := s.Weights; w != nil {
		if e := firstErr(
			checkMax("settings.weights.skill", uint64(w.Skill), MaxScoringWeight),
			checkMax("settings.weights.headroom", uint64(w.Headroom), MaxScoringWeight),
			checkMax("settings.weights.rating", uint64(w.Rating), MaxScoringWeight),
			checkMax("settings.weights.weight", uint64(w.Weight), MaxScoringWeight),
			checkMax("settings.weights.user_level", uint64(w.UserLevel), MaxScoringWeight),
			checkMax("settings.weights.aging_ms", uint64(w.AgingMs), MaxAgingMs),
		); e != nil {
			return e
		}
	}
	if len(s.Rules) > MaxRules {
		return invalid("settings.rules", "has %d rules, over the limit of %d", len(s.Rules), MaxRules)
	}
	for _, r := range s.Rules {
		if e := firstErr(
			checkID("settings.rules.group_id", r.GroupId),
			checkEnum("settings.rules.page_source", r.PageSource, pb.PageSource_name, true),
			checkOptID("settings.rules.category", r.Category),
			checkOptID("settings.rules.region", r.Region),
			checkOptID("settings.rules.question_type", r.QuestionType),
			checkMax("settings.rules.min_user_level", uint64(r.MinUserLevel), MaxUserLevel),
			checkOptID("settings.rules.attribute_key", r.AttributeKey),
			checkOptID("settings.rules.attribute_value", r.AttributeValue),
		); e != nil {
			return e
		}
		if r.AttributeValue != "" && r.AttributeKey == "" {
			return invalid("settings.rules.attribute_value", "needs settings.rules.attribute_key")
		}
	}
	return nil
}

func validateAgent(a *pb.UpsertAgent) *Error {
	if e := firstErr(checkID("merchant_id", a.MerchantId), checkID("agent_id", a.AgentId),
		checkMax("limit", uint64(a.Limit), MaxLimit),
		checkMax("weight", uint64(a.Weight), MaxWeight),
		checkMax("rating", uint64(a.Rating), MaxRating)); e != nil {
		return e
	}
	if len(a.Groups) > MaxAgentGroups {
		return invalid("groups", "has %d groups, over the limit of %d", len(a.Groups), MaxAgentGroups)
	}
	seen := make(map[string]bool, len(a.Groups))
	for _, g := range a.Groups {
		if e := firstErr(checkID("groups.group_id", g.GroupId), checkMax("groups.skill", uint64(g.Skill), MaxSkill)); e != nil {
			return e
		}
		if seen[g.GroupId] {
			return invalid("groups.group_id", "%q listed twice", g.GroupId)
		}
		seen[g.GroupId] = true
		if len(g.QuestionSkills) > MaxQuestionSkills {
			return invalid("groups.question_skills", "has %d entries, over the limit of %d", len(g.QuestionSkills), MaxQuestionSkills)
		}
		qseen := make(map[string]bool, len(g.QuestionSkills))
		for _, q := range g.QuestionSkills {
			if e := firstErr(checkID("groups.question_skills.question_type", q.QuestionType),
				checkMax("groups.question_skills.skill", uint64(q.Skill), MaxSkill)); e != nil {
				return e
			}
			if qseen[q.QuestionType] {
				return invalid("groups.question_skills.question_type", "%q listed twice", q.QuestionType)
			}
			qseen[q.QuestionType] = true
		}
	}
	return nil
}

func validateConsult(c *pb.Consult) *Error {
	if e := firstErr(checkID("merchant_id", c.MerchantId), checkID("buyer_id", c.BuyerId),
		checkEnum("page_source", c.PageSource, pb.PageSource_name, true),
		checkOptID("category", c.Category), checkOptID("region", c.Region),
		checkMax("user_level", uint64(c.UserLevel), MaxUserLevel),
		checkOptID("question_type", c.QuestionType),
		checkOptID("preferred_agent_id", c.PreferredAgentId)); e != nil {
		return e
	}
	if len(c.Attributes) > MaxAttributes {
		return invalid("attributes", "has %d attributes, over the limit of %d", len(c.Attributes), MaxAttributes)
	}
	for _, a := range c.Attributes {
		if e := firstErr(checkID("attributes.key", a.Key), checkOptID("attributes.value", a.Value)); e != nil {
			return e
		}
	}
	return nil
}

// Validate checks a command's shape as Apply will, so that a service can
// refuse a malformed request before proposing it. It returns an *Error
// (ErrInvalid or ErrUnknownCommand) or nil.
func Validate(c *pb.Command) error {
	if e := validate(c); e != nil {
		return e
	}
	return nil
}
