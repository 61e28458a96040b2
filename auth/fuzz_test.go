package auth

import (
	"testing"
	"time"
)

// FuzzVerify: no token, however hostile, panics or verifies without the
// secret's signature.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	good, err := Issue(secret, Claims{Role: RoleAgent, Merchants: []string{"m1"}, Agent: "a1", Expires: now.Add(time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, "", "fd1.", "fd1..", "fd1.e30.", "Bearer x", good + "x", good[:len(good)-3]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := Verify(secret, token, now)
		if err == nil && token != good {
			// Only a token carrying the secret's HMAC may verify: re-signing
			// its claims must give the same token.
			again, ierr := Issue(secret, *c)
			if ierr != nil {
				t.Fatalf("verified claims that cannot be issued: %+v (%v)", c, ierr)
			}
			if _, verr := Verify(secret, again, now); verr != nil {
				t.Fatalf("re-issued token does not verify: %v", verr)
			}
		}
	})
}
