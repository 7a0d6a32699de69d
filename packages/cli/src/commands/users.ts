import { randomBytes } from 'node:crypto';
import { ProjectRole, parseInput, projectRoles, RatchetError } from '@ratchet/core';
import type { Store, User } from '@ratchet/store';
import { type Command, Option } from 'commander';
import { projectIdByName, withStore } from '../context.js';

/** A password for a new or reset account: 144 random bits, printed once for the person to change. */
export function generatedPassword(): string {
  return randomBytes(18).toString('base64url');
}

async function userByEmail(store: Store, email: string): Promise<User> {
  const user = await store.accounts.getUserByEmail(email);
  if (!user) throw new RatchetError('not_found', `email: no account for ${email}`, 'email');
  return user;
}

const roleOption = () =>
  new Option('--role <role>', 'owner (everything, members), admin, annotator (the queue), viewer (reads)')
    .choices([...projectRoles])
    .makeOptionMandatory();

/**
 * The first owner of a fresh install, made by `ratchet serve`'s first run: when no account exists
 * yet, an owner of the oldest project (or of a new project "default") with a generated password,
 * returned for printing once. Two servers starting at once on one database: the second finds the
 * email taken and makes nothing.
 */
export async function createFirstOwner(
  store: Store,
  email = process.env.RATCHET_OWNER_EMAIL || 'owner@ratchet.local',
): Promise<{ email: string; password: string; project: string } | undefined> {
  const anyone = async () => (await store.accounts.listUsers()).length > 0;
  if (await anyone()) return undefined;
  const password = generatedPassword();
  // Two tries: a second server starting at the same moment may make the "default" project first.
  for (let attempt = 0; ; attempt++) {
    try {
      const project =
        (await store.db
          .selectFrom('projects')
          .select(['id', 'name'])
          .orderBy('created_at')
          .executeTakeFirst()) ?? (await store.projects.create('default'));
      const user = await store.accounts.createUser({ email, password });
      await store.accounts.setRole(project.id, user.id, 'owner', 'first-run');
      return { email, password, project: project.name };
    } catch (err) {
      // Another server on the database made the first owner at the same moment: a unique
      // constraint refused ours, and there is nothing left to do.
      if (await anyone()) return undefined;
      if (attempt > 0) throw err;
    }
  }
}

/** `ratchet users add|list|set-role|remove|reset-password`: people and their roles per project. */
export function registerUserCommands(program: Command): void {
  const users = program
    .command('users')
    .description('Manage people: accounts and their role in each project');
  users
    .command('add')
    .description(
      'Add a person to a project with a role (creating the account; a generated password is printed once)',
    )
    .requiredOption('--email <email>', 'their email (their sign-in name)')
    .requiredOption('--project <name>', 'project name')
    .addOption(roleOption())
    .option('--name <name>', 'display name')
    .option('--sso-only', 'no password: the account signs in with SSO only')
    .action(
      async (opts: { email: string; project: string; role: string; name?: string; ssoOnly?: boolean }) => {
        const role = parseInput(ProjectRole, opts.role, 'role');
        await withStore(program.opts(), async (store) => {
          const projectId = await projectIdByName(store, opts.project);
          const existing = await store.accounts.getUserByEmail(opts.email);
          const password = existing || opts.ssoOnly ? undefined : generatedPassword();
          const user =
            existing ?? (await store.accounts.createUser({ email: opts.email, name: opts.name, password }));
          await store.accounts.setRole(projectId, user.id, role, 'cli');
          console.log(`${user.email} is ${role} of ${opts.project} (user id ${user.id})`);
          if (password) console.log(`password (shown once): ${password}`);
        });
      },
    );
  users
    .command('list')
    .description('List accounts, or with --project the members and their roles')
    .option('--project <name>', 'project name')
    .action(async (opts: { project?: string }) => {
      await withStore(program.opts(), async (store) => {
        if (opts.project) {
          const members = await store.accounts.members(await projectIdByName(store, opts.project));
          console.table(
            members.map((m) => ({ id: m.id, email: m.email, role: m.role, password: m.hasPassword })),
          );
        } else {
          const all = await store.accounts.listUsers();
          console.table(all.map((u) => ({ id: u.id, email: u.email, password: u.hasPassword })));
        }
      });
    });
  users
    .command('set-role')
    .description("Change a person's role in a project (the last owner stays an owner)")
    .requiredOption('--email <email>', 'their email')
    .requiredOption('--project <name>', 'project name')
    .addOption(roleOption())
    .action(async (opts: { email: string; project: string; role: string }) => {
      const role = parseInput(ProjectRole, opts.role, 'role');
      await withStore(program.opts(), async (store) => {
        const user = await userByEmail(store, opts.email);
        await store.accounts.setRole(await projectIdByName(store, opts.project), user.id, role, 'cli');
        console.log(`${user.email} is ${role} of ${opts.project}`);
      });
    });
  users
    .command('remove')
    .description('Remove a person from a project, or without --project delete the account')
    .requiredOption('--email <email>', 'their email')
    .option('--project <name>', 'project name')
    .action(async (opts: { email: string; project?: string }) => {
      await withStore(program.opts(), async (store) => {
        const user = await userByEmail(store, opts.email);
        if (opts.project) {
          await store.accounts.removeMember(await projectIdByName(store, opts.project), user.id, 'cli');
          console.log(`${user.email} removed from ${opts.project}`);
        } else {
          await store.accounts.removeUser(user.id, 'cli');
          console.log(`account ${user.email} deleted`);
        }
      });
    });
  users
    .command('reset-password')
    .description('Give an account a new generated password (printed once) and end its sessions')
    .requiredOption('--email <email>', 'their email')
    .action(async (opts: { email: string }) => {
      await withStore(program.opts(), async (store) => {
        const user = await userByEmail(store, opts.email);
        const password = generatedPassword();
        await store.accounts.setPassword(user.id, password);
        console.log(`new password for ${user.email} (shown once): ${password}`);
      });
    });
}
