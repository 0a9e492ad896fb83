ALTER TABLE tenant_list ADD COLUMN require_verified_email boolean NOT NULL DEFAULT false;
