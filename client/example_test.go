package client_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/frontdeskhq/frontdesk/client"
	pb "github.com/frontdeskhq/frontdesk/gen/frontdesk/v1"
)

// These examples need a running cluster, so they are compiled but not run.

func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Any members will do: the client learns the rest from the shard map.
	c, err := client.New(ctx, []string{"10.0.0.1:7420", "10.0.0.2:7420"},
		client.WithToken("secret"),
		client.WithCallTimeout(2*time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	log.Printf("%d shards", c.Shards())
}

func ExampleClient_Consult() {
	ctx := context.Background()
	c, err := client.New(ctx, []string{"127.0.0.1:7420"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Give the whole call, retries included, three seconds.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	res, err := c.Consult(ctx, &pb.Consult{
		MerchantId: "shop-1",
		BuyerId:    "buyer-9",
		PageSource: pb.PageSource_PAGE_SOURCE_PRE_SALES,
		UserLevel:  3,
	})
	var retry *client.RetryError
	switch {
	case errors.Is(err, client.ErrBusy):
		log.Printf("nobody can take the buyer now (surge %v)", res.GetSurge())
	case errors.Is(err, client.ErrIndeterminate) && errors.As(err, &retry):
		// It may have been applied: asking again with the same request id
		// returns the first result and changes nothing.
		res, err = c.Consult(client.WithRequestID(context.Background(), retry.RequestID),
			&pb.Consult{MerchantId: "shop-1", BuyerId: "buyer-9"})
		log.Print(res, err)
	case errors.Is(err, client.ErrInvalid):
		var e *client.Error
		errors.As(err, &e)
		log.Printf("bad request: field %s: %s", e.Field, e.Message)
	case err != nil:
		log.Fatal(err)
	default:
		log.Printf("session %s: %v (agent %q, queue position %d)", res.GetSessionId(), res.GetOutcome(), res.GetAgentId(), res.GetPosition())
	}
}

func ExampleClient_Watch() {
	ctx := context.Background()
	c, err := client.New(ctx, []string{"127.0.0.1:7420"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var lastSeen uint64 // e.g. loaded from where the subscriber keeps it
	w := c.Watch(ctx, "shop-1", lastSeen)
	defer w.Close()
	for {
		events, err := w.Next()
		if errors.Is(err, client.ErrCompacted) {
			log.Fatal("too far behind: reload the state, then watch from a newer seq")
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range events {
			log.Printf("seq %d: %v session %s", e.GetSeq(), e.GetKind(), e.GetSessionId())
		}
		// Keep ResumeSeq, not the last event's seq, to watch again later:
		// for a quiet merchant it moves past other merchants' events.
		lastSeen = w.ResumeSeq()
	}
}

func ExampleClient_GetQueue() {
	ctx := context.Background()
	c, err := client.New(ctx, []string{"127.0.0.1:7420"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// A dashboard can read from any replica.
	q, err := c.GetQueue(ctx, "shop-1", "pre-sales", 20, client.Stale())
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%d waiting", q.GetLength())
}
