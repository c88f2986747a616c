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
		keyFile, secretFile, root string
		generate, publicOut       string
		put, get                  []string
		expires                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token (--key FILE | --secret FILE) [--root PATH] [--put PREFIX]... [--get PREFIX]... [--expires 24h]",
		Short: "Mint a JWT for clients of a relay run with --auth-key or --auth-secret (or generate a key with --generate)",
		Example: `  moqbridge token --generate ES256 --key relay.jwk --public relay.pub.jwk
  moqbridge token --key relay.jwk --root live --put alice --get ""`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case keyFile != "" && secretFile != "":
				return errors.New("--key and --secret: give one signing key, not both")
			case keyFile == "" && secretFile == "":
				return errors.New("--key FILE (a JWK or PEM key) or --secret FILE (a raw HMAC secret) is required")
			case secretFile != "" && generate != "":
				return errors.New("--generate writes a JWK: use --key FILE with it")
			}
			if generate != "" {
				return generateKey(cmd, generate, keyFile, publicOut)
			}
			c := auth.Claims{Root: root, Put: put, Get: get, IssuedAt: time.Now()}
			if expires > 0 {
				c.Expires = c.IssuedAt.Add(expires)
			}
			var tok string
			var err error
			if secretFile != "" {
				tok, err = auth.MintSecret(secretFile, c)
			} else {
				tok, err = auth.Mint(keyFile, c)
			}
			if err != nil {
				return tokenKeyError(err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "signing key file (JWK or PEM, with its private part); with --generate, where to write the new key")
	f.StringVar(&secretFile, "secret", "", "raw HMAC secret file to sign with (the relay's --auth-secret)")
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

// tokenKeyError names the flag of a signing key file that cannot be used,
// and the other flag when the file is of the other kind.
func tokenKeyError(err error) error {
	var kfe *auth.KeyFileError
	if !errors.As(err, &kfe) {
		return err
	}
	flag, hint := "--key", ""
	switch {
	case kfe.Secret:
		flag = "--secret"
		if errors.Is(kfe.Err, auth.ErrNotASecret) {
			hint = "; pass it as --key " + kfe.File
		}
	case errors.Is(kfe.Err, auth.ErrNotAKey):
		hint = "; if it is a raw HMAC secret, pass it as --secret " + kfe.File
	}
	return fmt.Errorf("%s %s: %v%s", flag, kfe.File, kfe.Err, hint)
}
