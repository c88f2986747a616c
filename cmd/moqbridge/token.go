package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/protocol/auth"
)

// newTokenCommand mints JWTs for the relay's auth, and generates keys.
func newTokenCommand() *cobra.Command {
	var (
		keyFile, root, generate, publicOut string
		put, get                           []string
		expires                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --key FILE [--root PATH] [--put PREFIX]... [--get PREFIX]... [--expires 24h]",
		Short: "Mint a JWT for clients of a relay run with --auth-key (or generate a key with --generate)",
		Example: `  moqbridge token --generate ES256 --key relay.jwk --public relay.pub.jwk
  moqbridge token --key relay.jwk --root live --put alice --get ""`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" {
				return errors.New("--key is required")
			}
			if generate != "" {
				return generateKey(cmd, generate, keyFile, publicOut)
			}
			c := auth.Claims{Root: root, Put: put, Get: get, IssuedAt: time.Now()}
			if expires > 0 {
				c.Expires = c.IssuedAt.Add(expires)
			}
			tok, err := auth.Mint(keyFile, c)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "signing key file (JWK, PEM or secret); with --generate, where to write the new key")
	f.StringVar(&root, "root", "", "the token's root path (connections are scoped to it)")
	f.StringArrayVar(&put, "put", nil, "prefix (relative to root) the client may publish; repeatable")
	f.StringArrayVar(&get, "get", nil, "prefix (relative to root) the client may subscribe to; repeatable")
	f.DurationVar(&expires, "expires", 0, "validity from now (0: no expiry)")
	f.StringVar(&generate, "generate", "", "generate a new signing key of this algorithm (HS256, ES256, EdDSA) into --key")
	f.StringVar(&publicOut, "public", "", "with --generate: also write the public JWK here (not for HS256)")
	return cmd
}

func generateKey(cmd *cobra.Command, alg, keyFile, publicOut string) error {
	key, err := auth.GenerateKey(alg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	if publicOut != "" {
		pub, err := auth.PublicJWK(key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(publicOut, pub, 0o644); err != nil {
			return fmt.Errorf("--public: %w", err)
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s key to %s\n", alg, keyFile)
	return nil
}
