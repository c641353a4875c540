#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file
# except in compliance with the License. You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the
# License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND,
# either express or implied. See the License for the specific language governing permissions
# and limitations under the License.
"""Golden results from Apache Flink for a sqllogictest file.

Reads a `.slt` file, runs its `statement ok` and `query` records on PyFlink (a streaming
TableEnvironment, parallelism 1, `table.local-time-zone` = 'UTC') and prints the file back
with each query's expected rows replaced by the rows Flink produced.

    $FLINK_PY scripts/flink_golden.py sql/tests/slt/functions_string.slt > out.slt

(FLINK_PY: a Python with apache-flink installed, see ../shared/peers/README.md.)

What runs:
  * `statement ok`: CREATE [TEMPORARY] TABLE / VIEW, DROP TABLE / VIEW and SET. Everything
    else (INSERT, EXECUTE STATEMENT SET, ...) is skipped, so queries over tables that only an
    INSERT fills see no rows: the script is meant for queries without FROM or over VALUES.
    `SET 'parallelism.default'` is ignored (Flink stays at parallelism 1).
  * `query <types> [rowsort|valuesort|nosort]`: the query is resolved first, then wrapped as
    `SELECT CAST(`c1` AS STRING), ... FROM (<query>)` and collected. NULL is rendered as
    `NULL`, an empty string as `(empty)`, a line break inside a value as `\\n`; BINARY and
    VARBINARY columns are not cast but shown in lowercase hex, VARIANT columns go through
    JSON_STRING (Flink has no CAST from VARIANT to STRING). A changelog result
    (+I/-U/+U/-D) is folded into its final rows. Rows are sorted when the record says
    rowsort (values, one a line, for valuesort).
  * A query Flink rejects (at planning or while running) keeps its record unchanged, with a
    comment line `# flink: <first line of the error>` above it. A `statement ok` that Flink
    rejects gets the same comment. Comments from an earlier run are replaced.
  * `statement error`, `query error` and any other record are printed unchanged.

`__WORK__` in SQL is replaced by a temporary directory (and written back in results).
"""

import argparse
import re
import sys
import tempfile

FLINK_COMMENT = "# flink: "

# Statements that are executed on Flink; anything else under `statement ok` is skipped.
RUNNABLE_STATEMENT = re.compile(
    r"^\s*(CREATE\s+(OR\s+REPLACE\s+)?(TEMPORARY\s+)?(TABLE|VIEW)\b"
    r"|DROP\s+(TEMPORARY\s+)?(TABLE|VIEW)\b"
    r"|SET\b)",
    re.IGNORECASE,
)
SET_STATEMENT = re.compile(r"^\s*SET\s+'([^']*)'\s*=\s*'([^']*)'\s*;?\s*$", re.IGNORECASE | re.DOTALL)

BINARY_TYPES = ("BINARY", "VARBINARY")

# Exception messages that only say "something below failed": the root cause is added.
GENERIC_MESSAGES = (
    "Job execution failed",
    "Failed to fetch next result",
    "Failed to fetch job execution result",
    "Could not execute",
    "Recovery is suppressed",
    "JobExecutionException",
    "ExecutionException",
)


# ---------------------------------------------------------------------------------------------
# Parsing


class Record:
    """One record: the lines of a block between blank lines."""

    def __init__(self, lines):
        self.lines = lines

    def comments_and_body(self):
        """Leading comment lines (stale `# flink:` lines dropped) and the rest."""
        i = 0
        while i < len(self.lines) and self.lines[i].lstrip().startswith("#"):
            i += 1
        comments = [c for c in self.lines[:i] if not c.startswith(FLINK_COMMENT)]
        return comments, self.lines[i:]


def split_blocks(text):
    """Splits the file into ("blank", lines) and ("record", lines) chunks, in order."""
    chunks = []
    current = []
    blanks = []
    for line in text.split("\n"):
        if line.strip() == "":
            if current:
                chunks.append(("record", current))
                current = []
            blanks.append(line)
        else:
            if blanks:
                chunks.append(("blank", blanks))
                blanks = []
            current.append(line)
    if current:
        chunks.append(("record", current))
    if blanks:
        chunks.append(("blank", blanks))
    return chunks


# ---------------------------------------------------------------------------------------------
# Errors


def short_class(line):
    """`org.apache.flink.table.api.ValidationException: msg` -> `ValidationException: msg`."""
    m = re.match(r"^([a-zA-Z_$][\w$]*\.)+([A-Z][\w$]*)(:|$)", line)
    if m:
        return line[m.start(2):]
    return line


def error_line(exc):
    """One line describing a Flink error: the top message and, if it differs, the root cause."""
    text = str(exc)
    java = getattr(exc, "java_exception", None)
    if java is not None:
        # A raw Py4JJavaError: walk the Java cause chain.
        chain = []
        seen = 0
        t = java
        while t is not None and seen < 50:
            chain.append(str(t.toString()))
            t = t.getCause()
            seen += 1
    else:
        lines = text.split("\n")
        # Py4J prefixes "An error occurred while calling o12.x.\n: ".
        if lines and lines[0].startswith("An error occurred while calling"):
            lines = lines[1:]
        if lines and lines[0].startswith(": "):
            lines[0] = lines[0][2:]
        chain = [lines[0]] if lines else [text]
        chain += [l[len("Caused by: "):] for l in lines if l.startswith("Caused by: ")]
    chain = [short_class(c.split("\n")[0].strip()) for c in chain if c.strip()]
    if not chain:
        return type(exc).__name__
    top = chain[0]
    root = chain[-1]
    generic = any(g in top for g in GENERIC_MESSAGES)
    if root != top:
        root_msg = root.split(": ", 1)[-1]
        if generic or root_msg not in top:
            if generic:
                return root
            return top + " (cause: " + root + ")"
    return top


# ---------------------------------------------------------------------------------------------
# Flink


class Flink:
    def __init__(self, work):
        from pyflink.table import EnvironmentSettings, TableEnvironment

        settings = EnvironmentSettings.in_streaming_mode()
        self.t_env = TableEnvironment.create(settings)
        config = self.t_env.get_config()
        config.set("parallelism.default", "1")
        config.set("table.exec.resource.default-parallelism", "1")
        config.set("table.local-time-zone", "UTC")
        self.work = work

    def sql(self, text):
        return text.replace("__WORK__", self.work)

    def unwork(self, value):
        return value.replace(self.work, "__WORK__")

    def statement(self, text):
        """Runs a `statement ok`; None if skipped or run, else the error line."""
        sql = self.sql(text).strip()
        if not RUNNABLE_STATEMENT.match(sql):
            return None
        sql = sql.rstrip().rstrip(";")
        m = SET_STATEMENT.match(sql)
        try:
            if m:
                key, value = m.group(1), m.group(2)
                if key != "parallelism.default":
                    self.t_env.get_config().set(key, value)
                return None
            if re.match(r"^\s*SET\b", sql, re.IGNORECASE):
                return None  # `SET` alone (lists the options) or an unparsed form
            self.t_env.execute_sql(sql)
            return None
        except Exception as e:  # noqa: BLE001 - any Flink failure is reported in the output
            return self.unwork(error_line(e))

    def query(self, text):
        """Runs a query; (rows, None) or (None, error line)."""
        sql = self.sql(text).strip().rstrip(";").rstrip()
        try:
            table = self.t_env.sql_query(sql)
            schema = table.get_resolved_schema()
            names = schema.get_column_names()
            # Types from the Java schema: PyFlink has no Python type for some (VARIANT).
            types = [t.getLogicalType() for t in schema._j_resolved_schema.getColumnDataTypes()]
        except Exception as e:  # noqa: BLE001
            return None, self.unwork(error_line(e))
        quoted = ["`%s`" % n.replace("`", "``") for n in names]
        # Every output column gets its own alias: generated names (EXPR$0, ...) of the outer
        # select would otherwise collide with those of the query.
        columns = [
            "%s AS `golden_text_%d`" % (self.as_string(q, str(t.getTypeRoot().name())), i)
            for i, (q, t) in enumerate(zip(quoted, types))
        ]
        # A function can yield NULL in a column typed NOT NULL. Selected as it is, Flink's sink
        # then fails the query ("Column ... is NOT NULL"), but CAST(... AS STRING) would turn
        # that NULL into an empty string: such columns are selected raw as well (never read).
        # Not VARIANT ones: Flink 2.3 fails (ClassCastException) on a raw VARIANT column selected
        # from a subquery next to other columns.
        columns += [
            "%s AS %s" % (q, q)
            for q, t in zip(quoted, types)
            if not t.isNullable() and str(t.getTypeRoot().name()) != "VARIANT"
        ]
        # The query on its own lines: a trailing `--` comment cannot swallow the parenthesis.
        wrapped = "SELECT %s FROM (\n%s\n) AS golden_query" % (", ".join(columns), sql)
        rows = []
        try:
            # Rows are read on the Java side: only the text columns cross to Python.
            it = self.t_env.execute_sql(wrapped)._j_table_result.collect()
            try:
                while it.hasNext():
                    row = it.next()
                    values = [self.render(row.getField(i)) for i in range(len(names))]
                    kind = str(row.getKind().name())
                    if kind in ("INSERT", "UPDATE_AFTER"):
                        rows.append(values)
                    else:  # UPDATE_BEFORE, DELETE: retract one equal row
                        try:
                            rows.remove(values)
                        except ValueError:
                            pass
            finally:
                it.close()
        except Exception as e:  # noqa: BLE001
            return None, self.unwork(error_line(e))
        return rows, None

    @staticmethod
    def as_string(column, root):
        """The select expression that turns a column of the given type root into text."""
        if root in BINARY_TYPES:
            return column  # collected as bytes, shown in hex (a CAST would decode UTF-8)
        if root == "VARIANT":
            return "JSON_STRING(%s)" % column  # Flink cannot CAST a VARIANT to STRING
        return "CAST(%s AS STRING)" % column

    def render(self, value):
        if value is None:
            return "NULL"
        if isinstance(value, (bytes, bytearray)):
            return value.hex()
        if value == "":
            return "(empty)"
        # A record cannot hold a line break: shown as the two characters \n.
        value = str(value).replace("\r", "\\r").replace("\n", "\\n")
        return self.unwork(value)


# ---------------------------------------------------------------------------------------------
# Records


def with_comment(comments, body, error):
    return comments + [FLINK_COMMENT + error.replace("\n", " ")] + body


def process_query(flink, comments, body):
    header = body[0].split()
    sort_mode = next((w for w in header[2:] if w in ("rowsort", "valuesort", "nosort")), "nosort")
    try:
        sep = body.index("----")
        sql_lines, has_sep = body[1:sep], True
    except ValueError:
        sql_lines, has_sep = body[1:], False
    rows, error = flink.query("\n".join(sql_lines))
    if error is not None:
        return with_comment(comments, body, error)
    if sort_mode == "rowsort":
        rows.sort()
    elif sort_mode == "valuesort":
        values = sorted(v for r in rows for v in r)
        rows = [[v] for v in values]
    out = comments + [body[0]] + sql_lines
    if rows or has_sep:
        out.append("----")
        out += [" ".join(r) for r in rows]
    return out


def process(flink, record):
    comments, body = record.comments_and_body()
    if not body:
        return comments
    head = body[0].split()
    if head[:2] == ["statement", "ok"]:
        error = flink.statement("\n".join(body[1:]))
        if error is not None:
            return with_comment(comments, body, error)
        return comments + body
    if head[0] == "query" and len(head) >= 2 and head[1] != "error":
        return process_query(flink, comments, body)
    return comments + body


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("slt", help="sqllogictest file to run on Flink")
    args = parser.parse_args()
    with open(args.slt, encoding="utf-8") as f:
        text = f.read()
    out = []
    with tempfile.TemporaryDirectory(prefix="flink-golden-") as work:
        flink = Flink(work)
        for kind, lines in split_blocks(text):
            if kind == "blank":
                out += lines
            else:
                out += process(flink, Record(lines))
    sys.stdout.write("\n".join(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
