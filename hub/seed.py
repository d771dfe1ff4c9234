"""Load a jurisdiction pack into the database. Idempotent: upserts, and a new routing rule
version only when the pack's rules differ from the newest."""

from __future__ import annotations

from typing import Any

import orjson

from dispatch.routing.rules import rules_to_rows
from dispatch.routing.store import current_version, install_rules, read_rules
from dispatch.sla.policy import load_policies
from hub.pack import Pack


async def seed(conn: Any, pack: Pack) -> int:
    """Upsert the pack's departments, people, categories, SLA policies, device profiles and
    routing rules; return how many departments it has."""
    async with conn.transaction():
        await _departments(conn, pack)
        await _categories(conn, pack)
        await _sla_policies(conn, pack)
        await _device_profiles(conn, pack)
        version = await current_version(conn)
        if rules_to_rows(await read_rules(conn, version)) != rules_to_rows(pack.routing_rules):
            await install_rules(
                conn,
                pack.routing_rules,
                created_by="hub seed",
                note=f"from the {pack.name} pack",
                base_version=version,
            )
    return len(pack.departments)


async def _departments(conn: Any, pack: Pack) -> None:
    # Clear the old triage flag first: at most one triage department may exist at a time.
    await conn.execute("UPDATE departments SET is_triage = false WHERE is_triage")
    # City level first: district departments refer to their municipal counterpart.
    ordered = sorted(pack.departments, key=lambda d: d.level != "city")
    await conn.executemany(
        """INSERT INTO departments (code, name, is_triage, level, district_code, parent_code,
                                    phone, email)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (code) DO UPDATE SET
               name = excluded.name, is_triage = excluded.is_triage, level = excluded.level,
               district_code = excluded.district_code, parent_code = excluded.parent_code,
               phone = excluded.phone, email = excluded.email""",
        [(d.code, d.name, d.is_triage, d.level, d.district_code, d.parent_code, d.phone,
          d.email) for d in ordered],
    )  # fmt: skip
    # The pack is the list of people: replace it whole.
    await conn.execute("DELETE FROM department_people")
    await conn.executemany(
        """INSERT INTO department_people (department_code, person, role, phone)
           VALUES ($1, $2, $3, $4)""",
        [(p.department_code, p.person, p.role, p.phone) for p in pack.people],
    )


async def _categories(conn: Any, pack: Pack) -> None:
    await conn.executemany(
        """INSERT INTO categories (code, name, grp, department_code, priority, description,
                                   attributes)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
           ON CONFLICT (code) DO UPDATE SET
               name = excluded.name, grp = excluded.grp,
               department_code = excluded.department_code, priority = excluded.priority,
               description = excluded.description, attributes = excluded.attributes""",
        [
            (c.code, c.name, c.group, c.department_code, c.priority, c.description,
             orjson.dumps(list(c.attributes)).decode())
            for c in pack.categories
        ],
    )  # fmt: skip


async def _sla_policies(conn: Any, pack: Pack) -> None:
    policies = load_policies(pack.directory / "sla-policies.csv")
    await conn.execute("DELETE FROM sla_policies")
    await conn.executemany(
        """INSERT INTO sla_policies (category, priority, calendar, accept_within,
                                     resolve_within, warn_at, escalate_city_after)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        [(p.category, p.priority, p.calendar, str(p.accept_within), str(p.resolve_within),
          p.warn_at, str(p.escalate_city_after)) for p in policies],
    )  # fmt: skip


async def _device_profiles(conn: Any, pack: Pack) -> None:
    # Rules go as JSON text cast in SQL ($6::text::jsonb): a plain asyncpg connection (hub seed,
    # the tests) has no jsonb codec, a pool's (hub/db.py) would encode a str a second time.
    # Re-seeding replaces the rules the pack set, never ones an admin edited (rules_set_by).
    await conn.executemany(
        """INSERT INTO device_profiles (code, name, department_code, reporting_interval_s,
                                        inactivity_timeout_s, rules)
           VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)
           ON CONFLICT (code) DO UPDATE SET
               name = excluded.name, department_code = excluded.department_code,
               reporting_interval_s = excluded.reporting_interval_s,
               inactivity_timeout_s = excluded.inactivity_timeout_s,
               rules = CASE WHEN device_profiles.rules_set_by = 'pack' THEN excluded.rules
                            ELSE device_profiles.rules END""",
        [(p.code, p.name, p.department_code, p.reporting_interval_s, p.inactivity_timeout_s,
          orjson.dumps(pack.device_rules.get(p.code, [])).decode())
         for p in pack.device_profiles],
    )  # fmt: skip
