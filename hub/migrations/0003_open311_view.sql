-- One definition of what an Open311 service request is, read by every Open311 query.
CREATE VIEW open311_requests AS
SELECT e.event_id, e.source, e.occurred_at, e.updated_at AS event_updated_at, e.text,
       e.address, e.lon, e.lat, e.category, c.name AS service_name,
       e.record -> 'raw' ->> 'media_url' AS media_url,
       e.record -> 'raw' ->> 'address_id' AS address_id,
       t.status AS ticket_status, t.updated_at AS ticket_updated_at, d.name AS agency,
       CASE WHEN t.status IN ('resolved', 'closed') THEN 'closed' ELSE 'open' END AS status,
       (SELECT h.note FROM ticket_history h
        WHERE h.ticket_id = t.ticket_id AND h.action <> 'dispatch'
        ORDER BY h.id DESC LIMIT 1) AS status_notes
FROM events e
LEFT JOIN categories c ON c.code = e.category
LEFT JOIN tickets t ON t.event_id = e.event_id
LEFT JOIN departments d ON d.code = t.department_code;
