-- A WebSocket delivery with nobody connected is kept in the user's catch-up stream.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('retrying', 'delivered', 'queued-offline', 'failed'));
