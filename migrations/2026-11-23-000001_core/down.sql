DROP TABLE idempotency_keys;
DROP TABLE deliveries;
DROP TABLE messages;
DROP TABLE groups;
DROP TABLE levels;
DROP TABLE tenants;
