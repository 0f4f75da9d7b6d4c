"""Renaming a group (the IAM API's ``UpdateGroup``): the SQL half of ``Store.rename_group``."""

from __future__ import annotations

import sqlalchemy as sa

from broker.errors import AlreadyExists, RecordNotFound
from broker.storage import schema as t
from broker.storage.base import Group
from broker.storage.sql_base import SqlBase


class GroupsAdminMixin(SqlBase):
    async def rename_group(self, name: str, new_name: str) -> Group:
        g = t.groups
        async with self._write("rename group") as conn:
            # Locked first (PostgreSQL): anyone adding a member or a policy holds the row
            # ``FOR KEY SHARE`` and is waited for; later ones find the old name gone.
            row = (
                await conn.execute(sa.select(g).where(g.c.name == name).with_for_update())
            ).first()
            if row is None:
                raise RecordNotFound(f"group {name!r} not found")
            if (await conn.execute(sa.select(g.c.name).where(g.c.name == new_name))).first():
                raise AlreadyExists(f"group {new_name!r} already exists")
            await conn.execute(
                sa.insert(g).values(
                    name=new_name, description=row.description, created_at=row.created_at
                )
            )
            gm = t.group_members
            await conn.execute(
                sa.update(gm).where(gm.c.group_name == name).values(group_name=new_name)
            )
            for table in (t.policy_attachments, t.inline_policies, t.permissions_boundaries):
                # anything left under the new name by an earlier group of that name goes
                await conn.execute(
                    sa.delete(table).where(
                        table.c.principal_type == "group", table.c.principal == new_name
                    )
                )
                await conn.execute(
                    sa.update(table)
                    .where(table.c.principal_type == "group", table.c.principal == name)
                    .values(principal=new_name)
                )
            await conn.execute(sa.delete(g).where(g.c.name == name))
            return Group(name=new_name, description=row.description, created_at=row.created_at)
