// Package auth holds the credential machinery of the HTTP edge: argon2id
// password hashing in PHC string format with a bounded number of concurrent
// hashes, and HS256 JSON Web Tokens with pinned algorithm, issuer, audience,
// token type and key rotation by key id.
//
// Package auth decides nothing about who may do what; that is the domain's. It
// imports domain and domain/users and must not import commands, projections,
// eventstore or other adapters. It never logs or returns a secret in an error.
package auth
