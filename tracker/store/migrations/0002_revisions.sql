-- Answers settled after the fact (tracker.core.settle): a stored position whose answer the
-- matcher revised a few minutes later keeps the revised answer and says when it was revised.

ALTER TABLE positions ADD COLUMN revised_at timestamptz;
ALTER TABLE vehicle_latest ADD COLUMN revised_at timestamptz;
