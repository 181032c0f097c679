-- The quickstart's one app. On SQLite every tenant has a file of its own, so the table
-- needs no tenant column: the file is the tenant.
CREATE TABLE notes (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
