/**
 * Inventory values that are only right or wrong for a given base image: the time zone must exist in
 * its /usr/share/zoneinfo (Debian 13 moved legacy names such as US/Pacific to tzdata-legacy), and the
 * admin user must not be one of its system accounts. Checked once per build, before any card is baked,
 * against the base's facts (base-facts.ts).
 */
import { PibakeError, type Problem } from '../common/errors.ts';
import type { Inventory } from '../inventory/types.ts';
import { zoneInBase, type BaseRecord } from './base-facts.ts';

/** Below this uid Debian's accounts are the system's (adduser's FIRST_UID). */
const FIRST_PERSON_UID = 1000;

/** `facts` must have the inventory's time zone looked up (readBaseFacts with it in `zones`). */
export function checkInventoryAgainstBase(inventory: Inventory, base: { label: string; facts: BaseRecord }): void {
  const { facts, label } = base;
  const problems: Problem[] = [];
  const timezone = inventory.locale.timezone;
  const zone = zoneInBase(facts, timezone);
  if (zone === undefined) throw new Error(`time zone ${timezone} was not looked up in the base's facts`);
  if (facts.zoneinfo && !zone) {
    problems.push({
      message: `time zone "${timezone}" does not exist in the base image ${label} (no /usr/share/zoneinfo/${timezone})`,
      hint: 'name a current zone such as Europe/London or America/Los_Angeles; old aliases (US/Pacific, GB) are not installed',
      location: inventory.locations.get('locale.timezone') ?? { file: inventory.file },
    });
  }
  const user = inventory.admin.user;
  for (const account of facts.accounts) {
    if (account.name === user && account.uid < FIRST_PERSON_UID) {
      problems.push({
        message: `admin.user "${user}" is a system account of the base image ${label} (uid ${account.uid})`,
        hint: 'name an ordinary user such as pi or admin',
        location: inventory.locations.get('admin.user') ?? { file: inventory.file },
      });
    }
  }
  problems.sort((a, b) => (a.location?.line ?? 0) - (b.location?.line ?? 0));
  if (problems.length > 0) throw PibakeError.fromProblems(`${inventory.file} does not fit the base image`, problems);
}
