package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Ping checks that a broker of cfg answers a metadata request and knows the
// events topic with at least one partition. It is meant for /ready: it opens
// and closes its own connection and gives up when ctx ends.
func Ping(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	sc := SaramaConfig(cfg.ClientID + "-health")
	sc.Net.DialTimeout = 2 * time.Second
	sc.Net.ReadTimeout = 5 * time.Second
	sc.Metadata.Retry.Max = 0
	sc.Metadata.Full = false
	if err := validate(sc); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		client, err := sarama.NewClient(cfg.Brokers, sc)
		if err != nil {
			done <- err
			return
		}
		defer client.Close()
		parts, err := client.Partitions(cfg.Topic)
		if err == nil && len(parts) == 0 {
			err = fmt.Errorf("topic %s has no partitions", cfg.Topic)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("kafka %v: %w", cfg.Brokers, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka %v: %w", cfg.Brokers, ctx.Err())
	}
}
