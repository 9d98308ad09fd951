-- An order's authorization ids, in identifier order, as a JSON array: every order fetch
-- (the clients poll them) is then one read instead of two.
ALTER TABLE acme_orders ADD COLUMN authz_ids_json TEXT;
UPDATE acme_orders SET authz_ids_json = (
    SELECT json_group_array(authz_id) FROM (
        SELECT authz_id FROM acme_order_authzs l
        WHERE l.order_id = acme_orders.id ORDER BY l.position
    )
);
