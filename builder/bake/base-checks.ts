/**
 * Inventory values that are only right or wrong for a given base image: the time zone must exist in
 * its /usr/share/zoneinfo (Debian 13 moved legacy names such as US/Pacific to tzdata-legacy), and the
 * admin user must not be one of its system accounts. Checked once per build, before any card is baked.
 */
import { PibakeError, type Problem } from '../common/errors.ts';
import type { RaspiosImage } from '../image/raspios.ts';
import type { Inventory } from '../inventory/types.ts';

/** Below this uid Debian's accounts are the system's (adduser's FIRST_UID). */
const FIRST_PERSON_UID = 1000;

export async function checkInventoryAgainstBase(inventory: Inventory, base: RaspiosImage): Promise<void> {
  const problems: Problem[] = [];
  const timezone = inventory.locale.timezone;
  if ((await base.root.exists('/usr/share/zoneinfo')) && !(await base.root.exists(`/usr/share/zoneinfo/${timezone}`))) {
    problems.push({
      message: `time zone "${timezone}" does not exist in the base image ${base.label} (no /usr/share/zoneinfo/${timezone})`,
      hint: 'name a current zone such as Europe/London or America/Los_Angeles; old aliases (US/Pacific, GB) are not installed',
      location: inventory.locations.get('locale.timezone') ?? { file: inventory.file },
    });
  }
  const user = inventory.admin.user;
  const passwd = (await base.root.stat('/etc/passwd'))?.kind === 'file' ? (await base.root.readFile('/etc/passwd')).toString('utf8') : '';
  for (const line of passwd.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name === user && Number(uid) < FIRST_PERSON_UID) {
      problems.push({
        message: `admin.user "${user}" is a system account of the base image ${base.label} (uid ${uid})`,
        hint: 'name an ordinary user such as pi or admin',
        location: inventory.locations.get('admin.user') ?? { file: inventory.file },
      });
    }
  }
  problems.sort((a, b) => (a.location?.line ?? 0) - (b.location?.line ?? 0));
  if (problems.length > 0) throw PibakeError.fromProblems(`${inventory.file} does not fit the base image`, problems);
}
