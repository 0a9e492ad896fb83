-- The tenant's sign-in policy, kept with the registry so that sign-in reads it
-- in the same lookup as the account.
ALTER TABLE tenant_registry ADD COLUMN require_verified_email boolean NOT NULL DEFAULT false;
