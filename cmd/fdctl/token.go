package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/frontdeskhq/frontdesk/auth"
)

// tokenIssue mints an API token with the cluster secret:
// fdctl token issue --secret-file F --role R [--merchant m1,m2|*] [--agent A] [--ttl 24h]
func (c *cmd) tokenIssue(args []string) error {
	var secretFile, role, merchants, agent string
	ttl := 24 * time.Hour
	if _, err := c.flags("token issue", args, 0, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&secretFile, "secret-file", "", "the cluster's --auth-secret-file")
		fs.StringVar(&role, "role", "", "im-service, agent, supervisor or operator")
		fs.StringVar(&merchants, "merchant", "", "merchant scope: one id, a comma list, or * for all")
		fs.StringVar(&agent, "agent", "", "the agent's id (agent tokens)")
		fs.DurationVar(&ttl, "ttl", ttl, "how long the token is valid")
	}); err != nil {
		return err
	}
	if secretFile == "" || role == "" {
		return fmt.Errorf("%w: token issue needs --secret-file and --role", errUsage)
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: --ttl must be positive", errUsage)
	}
	b, err := os.ReadFile(secretFile)
	if err != nil {
		return err
	}
	now := time.Now()
	claims := auth.Claims{Role: auth.Role(role), Agent: agent, Issued: now, Expires: now.Add(ttl)}
	for _, m := range strings.Split(merchants, ",") {
		if m = strings.TrimSpace(m); m != "" {
			claims.Merchants = append(claims.Merchants, m)
		}
	}
	tok, err := auth.Issue([]byte(strings.TrimSpace(string(b))), claims)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, tok)
	return nil
}
