/**
 * Values the inventory lets through reach the bookworm NetworkManager keyfile unchanged in meaning:
 * judged by GLib's own key-file parser (the one NetworkManager reads keyfiles with).
 */
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { loadRoles } from '../../builder/render/roles.ts';
import { loadOrCreateSecrets } from '../../builder/render/secrets.ts';
import { nmKeyfileSsid } from '../../builder/render/seeds.ts';
import { FIXTURE_OVERLAYS, FIXTURE_ROLES, LITE_PACKAGES, renderNamed, sevenNodeInventory, withTempDir } from './fixture.ts';

/** Groups of a key file and the bytes of [wifi] ssid as NetworkManager reads them (a string, or a list of byte values). */
async function readKeyfile(text: string): Promise<{ groups: string[]; ssid: string }> {
  const script = `
import sys, json, re
from gi.repository import GLib
k = GLib.KeyFile()
text = sys.stdin.read()
k.load_from_data(text, len(text.encode('utf-8')), GLib.KeyFileFlags.NONE)
raw = k.get_value('wifi', 'ssid')
if re.fullmatch(r'\\s*[0-9]{1,3}\\s*(;\\s*[0-9]{1,3}\\s*)*;?\\s*', raw):
    ssid = bytes(k.get_integer_list('wifi', 'ssid')).decode('utf-8')
else:
    ssid = k.get_string('wifi', 'ssid')
print(json.dumps({'groups': k.get_groups()[0], 'ssid': ssid}))
`;
  // The system Python: it has the GLib bindings (python3-gi).
  const { stdout } = await execa('/usr/bin/python3', ['-c', script], { input: text });
  return JSON.parse(stdout) as { groups: string[]; ssid: string };
}

describe('NetworkManager keyfile for Wi-Fi (both generations: the PSK stays off the boot partition)', () => {
  it.each(['pilab-wifi', 'Home Net', '1234', 'café', 'semi;colon', '[ipv4]', 'back\\slash', ' leading', 'dns=6.6.6.6;'])(
    'keeps the SSID %j exactly and adds no group', async (ssid) => {
      await withTempDir(async (dir) => {
        const inventory = sevenNodeInventory(dir, { wifi: { country: 'DE', ssid, passphrase: 'correct horse battery staple' } });
        const roles = await loadRoles(FIXTURE_ROLES, FIXTURE_OVERLAYS);
        const secrets = await loadOrCreateSecrets(inventory, roles);
        for (const generation of ['bookworm', 'trixie'] as const) {
          const rendered = await renderNamed({
            inventory, nodeName: 'lb', roles, secrets,
            base: { generation, installedPackages: LITE_PACKAGES }, overlaysDir: FIXTURE_OVERLAYS,
          });
          const entry = rendered.rootEntries.find((e) => e.path === '/etc/NetworkManager/system-connections/wlan0.nmconnection');
          const parsed = await readKeyfile(entry && 'data' in entry ? entry.data.toString('utf8') : '');
          expect(parsed, generation).toEqual({ groups: ['connection', 'wifi', 'wifi-security', 'ipv4', 'ipv6'], ssid });
        }
      });
    });

  it('writes plain words plainly, anything else as byte values', () => {
    expect(nmKeyfileSsid('pilab-wifi')).toBe('pilab-wifi');
    expect(nmKeyfileSsid('123')).toBe('49;50;51;');
    expect(nmKeyfileSsid('a;b')).toBe('97;59;98;');
  });
});
