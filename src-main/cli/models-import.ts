/** `loupe models import DIR [--link]`: validate a pack (every hash) and copy or link it into the user's packs. */
import type { Command } from 'commander';

/** Add `import` to the `loupe models` command. */
export function registerModelImportCommand(models: Command): void {
  models
    .command('import')
    .description('check a model pack (every hash) and copy it into Loupe’s packs (atomic: all or nothing)')
    .argument('<dir>', 'the pack folder (the one with manifest.json)')
    .option('--link', 'link to the folder instead of copying it (it must then stay where it is)')
    .action(async (dir: string, opts: { link?: boolean }) => {
      const [{ importPack }, { userPacksDir }] = await Promise.all([
        import('../packs/manage.ts'),
        import('./models.ts'),
      ]);
      const { dir: dest, manifest } = await importPack(dir, userPacksDir(), { link: opts.link });
      process.stdout.write(
        `imported ${manifest.name}@${manifest.version} (${opts.link ? 'linked' : 'copied'}) → ${dest}\n` +
          'Choose it in the app under Settings → Models, or pass --model to the CLI.\n',
      );
    });
}
