package auth

// Rule says who may call a procedure.
type Rule struct {
	// Roles allowed to call it.
	Roles []Role
	// Scoped: the request names a merchant (a merchant_id field at its top
	// level or in a message field of it) that must be in the token's scope.
	Scoped bool
	// OwnAgent: for the agent role, the request's agent_id must be the
	// token's agent.
	OwnAgent bool
	// ActsOnSession: for the agent role, the session must be the agent's
	// own; the service passes the token's agent to the state machine, which
	// checks it atomically with the change (FromContext).
	ActsOnSession bool
	// Public: no token needed (reflection).
	Public bool
}

var (
	merchantRoles = []Role{RoleIMService, RoleSupervisor}
	sessionRoles  = []Role{RoleIMService, RoleSupervisor, RoleAgent}
	everyone      = []Role{RoleIMService, RoleSupervisor, RoleAgent, RoleOperator}
	operators     = []Role{RoleOperator}
	supervisors   = []Role{RoleSupervisor}
)

// Policy maps every procedure to its rule. A procedure missing here is
// denied to everyone (default deny); TestPolicyCoversEveryProcedure fails
// when a new procedure has no rule.
var Policy = map[string]Rule{
	// An IM service dispatches buyers; agents end, transfer and reply to
	// their own sessions; supervisors may do all of it for their merchants.
	"/frontdesk.v1.DispatchService/Consult":     {Roles: merchantRoles, Scoped: true},
	"/frontdesk.v1.DispatchService/Escalate":    {Roles: merchantRoles, Scoped: true},
	"/frontdesk.v1.DispatchService/Transfer":    {Roles: sessionRoles, Scoped: true, ActsOnSession: true},
	"/frontdesk.v1.DispatchService/End":         {Roles: sessionRoles, Scoped: true, ActsOnSession: true},
	"/frontdesk.v1.DispatchService/FirstReply":  {Roles: sessionRoles, Scoped: true, ActsOnSession: true},
	"/frontdesk.v1.DispatchService/GetSession":  {Roles: merchantRoles, Scoped: true},
	"/frontdesk.v1.DispatchService/GetPosition": {Roles: merchantRoles, Scoped: true},
	// A batch of write calls: open to every role that may make one of them;
	// the service authorizes each call against its own procedure's rule
	// (Authorize), so a batch can do nothing its calls could not alone.
	"/frontdesk.v1.DispatchService/Batch": {Roles: sessionRoles},

	// Agents set their own status and pull for themselves.
	"/frontdesk.v1.AgentService/SetStatus": {Roles: []Role{RoleAgent, RoleSupervisor}, Scoped: true, OwnAgent: true},
	"/frontdesk.v1.AgentService/PullNext":  {Roles: []Role{RoleAgent, RoleSupervisor}, Scoped: true, OwnAgent: true},

	// Supervisors configure their merchants; IM services may read them.
	"/frontdesk.v1.AdminService/UpsertMerchant": {Roles: supervisors, Scoped: true},
	"/frontdesk.v1.AdminService/DeleteMerchant": {Roles: supervisors, Scoped: true},
	"/frontdesk.v1.AdminService/UpsertGroup":    {Roles: supervisors, Scoped: true},
	"/frontdesk.v1.AdminService/DeleteGroup":    {Roles: supervisors, Scoped: true},
	"/frontdesk.v1.AdminService/UpsertAgent":    {Roles: supervisors, Scoped: true},
	"/frontdesk.v1.AdminService/DeleteAgent":    {Roles: supervisors, Scoped: true},
	"/frontdesk.v1.AdminService/GetMerchant":    {Roles: merchantRoles, Scoped: true},
	"/frontdesk.v1.AdminService/ListAgents":     {Roles: merchantRoles, Scoped: true},
	"/frontdesk.v1.AdminService/GetQueue":       {Roles: merchantRoles, Scoped: true},
	"/frontdesk.v1.AdminService/GetStats":       {Roles: merchantRoles, Scoped: true},
	// The list of every merchant is the cluster's, not a merchant's.
	"/frontdesk.v1.AdminService/ListMerchants": {Roles: operators},

	"/frontdesk.v1.EventService/Watch": {Roles: merchantRoles, Scoped: true},

	// Every client needs the shard map to route; it names no merchant.
	"/frontdesk.v1.ClusterService/GetShardMap":        {Roles: everyone},
	"/frontdesk.v1.ClusterService/GetStatus":          {Roles: operators},
	"/frontdesk.v1.ClusterService/TransferLeadership": {Roles: operators},
	"/frontdesk.v1.ClusterService/DrainNode":          {Roles: operators},
	"/frontdesk.v1.ReplicaService/GetDigest":          {Roles: operators},

	// Reflection describes the API, not its data.
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {Public: true},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {Public: true},
}
