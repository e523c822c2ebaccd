import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PibakeError } from '../../builder/common/errors.ts';
import { loadInventory } from '../../builder/inventory/load.ts';
import { ROLES, SHA, VALID, edit, expectSingle, locate, workspace } from './helpers.ts';
import type { Workspace } from './helpers.ts';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.cleanup());

const single = (yaml: string, marker: string, message: RegExp): Promise<string> => expectSingle(ws, yaml, marker, message);

/** Among the problems of `yaml`, one at the `^` of `marker` matching `message`. */
async function among(yaml: string, marker: string, message: RegExp): Promise<string[]> {
  const problems = await ws.problems(yaml);
  const where = `${locate(yaml, marker)}: `;
  expect(problems.some((p) => p.startsWith(where) && message.test(p)), `${where}${message}\n${problems.join('\n')}`).toBe(true);
  return problems;
}

describe('a valid inventory', () => {
  it('loads with camelCase keys, defaults and locations', async () => {
    const inventory = await ws.load(VALID);
    expect(inventory.file).toBe(ws.file);
    expect(inventory.cluster).toEqual({ name: 'pistack', domain: 'pistack.lan' });
    expect(inventory.network).toEqual({ cidr: '10.0.0.0/24', prefixLength: 24, gateway: '10.0.0.1', dns: ['10.0.0.1'] });
    expect(inventory.base).toEqual({ url: expect.stringMatching(/^https:/), sha256: SHA });
    expect(inventory.admin).toEqual({ user: 'pi', sshKeys: [], generateSshKey: true, password: 'none' });
    expect(inventory.locale).toEqual({ timezone: 'Etc/UTC', locale: 'C.UTF-8', keyboard: 'us' });
    expect(inventory.wifi).toBeUndefined();
    expect(inventory.nodes.map((n) => `${n.name}/${n.role}/${n.ip}/${n.mac ?? '-'}`)).toEqual([
      'lb1/lb/10.0.0.10/-',
      'web1/primary/10.0.0.11/-',
      'web2/replica/10.0.0.12/-',
      'web3/replica/10.0.0.13/dc:a6:32:00:00:13',
    ]);
    expect(inventory.roles).toEqual({
      postgresql: { port: 5432, database: 'pibake', maxSlotWalKeepSize: '1GB' },
      web: { port: 80, appPort: 8000 },
      lb: { statsPort: 8404, statsUser: 'admin', pgWritePort: 5000, pgReadPort: 5001, vrrpRouterId: 51, monitorPort: 8405 },
      patroni: { loopWait: 2, retryTimeout: 4, synchronousMode: true, failsafeMode: true, restPort: 8008 },
      etcd: { members: ['web1', 'web2', 'web3'], clientPort: 2379, peerPort: 2380 },
    });
    const ip = inventory.locations.get('nodes.2.ip');
    expect(`${ip?.line}:${ip?.column}`).toBe(locate(VALID, 'web2, role: replica, ip: ^10.0.0.12'));
    expect(ip?.file).toBe(ws.file);
  });

  it('defaults dns to the gateway and takes explicit role settings, locale and wifi', async () => {
    const yaml = `${edit(VALID, '  dns: [10.0.0.1]\n', '')}locale: { timezone: Europe/London, locale: en_GB.UTF-8, keyboard: gb }
wifi: { country: GB, ssid: 12345678, passphrase: "correct horse" }
roles:
  postgresql: { version: 17, max_slot_wal_keep_size: 2GB }
  lb: { stats_port: 9000 }
`;
    const inventory = await ws.load(yaml);
    expect(inventory.network.dns).toEqual(['10.0.0.1']);
    expect(inventory.locale).toEqual({ timezone: 'Europe/London', locale: 'en_GB.UTF-8', keyboard: 'gb' });
    expect(inventory.wifi).toEqual({ country: 'GB', ssid: '12345678', passphrase: 'correct horse' });
    expect(inventory.roles.postgresql).toEqual({ version: 17, port: 5432, database: 'pibake', maxSlotWalKeepSize: '2GB' });
    expect(inventory.roles.lb.statsPort).toBe(9000);
    const where = inventory.locations.get('roles.lb.statsPort');
    expect(`${where?.line}:${where?.column}`).toBe(locate(yaml, 'stats_port: ^9000'));
  });

  it('accepts a crypt hash made by openssl as the password', async () => {
    const hash = execFileSync('openssl', ['passwd', '-6', '-salt', 'pibakesalt', 'secret'], { encoding: 'utf8' }).trim();
    const inventory = await ws.load(edit(VALID, 'password: none', `password: "${hash}"`));
    expect(inventory.admin.password).toEqual({ hash });
    expect((await ws.load(edit(VALID, 'password: none', 'password: generate'))).admin.password).toBe('generate');
  });

  it('resolves a base path against the inventory folder and ~ against the home folder', async () => {
    const relative = await ws.load(VALID.replace(/ {2}url: .*\n {2}sha256: .*\n/, '  path: images/raspios.img.xz\n'));
    expect(relative.base).toEqual({ path: join(ws.dir, 'images/raspios.img.xz') });
    const home = process.env.HOME;
    process.env.HOME = ws.dir;
    try {
      const tilde = await ws.load(VALID.replace(/ {2}url: .*\n/, '  path: ~/raspios.img.xz\n'));
      expect(tilde.base).toEqual({ path: join(ws.dir, 'raspios.img.xz'), sha256: SHA });
    } finally {
      process.env.HOME = home;
    }
  });
});

describe('SSH keys', () => {
  let pub: string;
  beforeAll(async () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'me@laptop', '-f', join(ws.dir, 'id_test')]);
    pub = (await readFile(join(ws.dir, 'id_test.pub'), 'utf8')).trim();
  });

  it('reads a .pub file by relative path and by ~, and takes a key written out', async () => {
    const home = process.env.HOME;
    process.env.HOME = ws.dir;
    try {
      const yaml = edit(VALID, '  generate_ssh_key: true\n', `  ssh_keys: [id_test.pub, ~/id_test.pub, "${pub}"]\n  generate_ssh_key: false\n`);
      const inventory = await ws.load(yaml);
      expect(inventory.admin.sshKeys).toEqual([pub]);
      expect(inventory.admin.generateSshKey).toBe(false);
    } finally {
      process.env.HOME = home;
    }
  });

  it('reports a key file that does not exist', async () => {
    const yaml = edit(VALID, '  generate_ssh_key: true\n', '  ssh_keys: [~/.ssh/does-not-exist.pub]\n');
    await single(yaml, 'ssh_keys: [^~/', /SSH key file .*does-not-exist\.pub does not exist \(hint: create one with `ssh-keygen/);
  });

  it('reports a file that is not a public key, and a private key with the .pub to use instead', async () => {
    await ws.write('notes.txt', 'hello\n');
    await single(edit(VALID, '  generate_ssh_key: true\n', '  ssh_keys: [notes.txt]\n'), '^notes.txt', /notes\.txt is not a public key file/);
    const problem = await single(edit(VALID, '  generate_ssh_key: true\n', '  ssh_keys: [./id_test]\n'), '^./id_test', /id_test is a private key/);
    expect(problem).toMatch(/id_test\.pub/);
  });

  it('reports a damaged key written out', async () => {
    const damaged = pub.replace(/AAAA(.{8})/, 'AAAA$1x');
    await single(edit(VALID, '  generate_ssh_key: true\n', `  ssh_keys: ["${damaged}"]\n`), 'ssh_keys: [^"', /ssh-ed25519 key .* (damaged|base64)/);
  });

  it('reports an inventory nobody could log in to', async () => {
    await single(edit(VALID, 'generate_ssh_key: true', 'generate_ssh_key: false'), 'generate_ssh_key: ^false', /no SSH key: ssh_keys is empty and generate_ssh_key is false/);
  });
});

describe('one problem per rule, at its line:column', () => {
  it('unknown keys, with a did-you-mean hint', async () => {
    const yaml = edit(VALID, '  password: none\n', '  pasword: none\n');
    await single(yaml, '^pasword', /unknown key "pasword" in admin \(hint: did you mean "password"\?\)/);
    await single(edit(VALID, 'generate_ssh_key', 'generateSshKey'), '^generateSshKey', /did you mean "generate_ssh_key"\? \(pibake's YAML keys are snake_case\)/);
    await single(`${VALID}colour: blue\n`, '^colour', /unknown key "colour" at the top level \(hint: known keys here: cluster, network/);
  });

  it('a renamed required key is both unknown and missing', async () => {
    const yaml = edit(VALID, '  domain: pistack.lan', '  domian: pistack.lan');
    const problems = await among(yaml, '^domian', /did you mean "domain"/);
    expect(problems).toContain(`${locate(yaml, '^cluster:')}: missing required key "cluster.domain" (hint: add domain: (e.g. domain: pistack.lan) — DNS domain of the nodes; a node's FQDN is <name>.<domain> (written to /etc/hosts))`);
    expect(problems).toHaveLength(2);
  });

  it('missing required fields, at the section that lacks them', async () => {
    await single(edit(VALID, '  user: pi\n', ''), '^admin:', /missing required key "admin.user"/);
    await single(edit(VALID, '  - { name: web2, role: replica, ip: 10.0.0.12 }', '  - { name: web2, role: replica }'), '- ^{ name: web2', /missing required key "nodes\[2\]\.ip"/);
    const noNodes = VALID.slice(0, VALID.indexOf('nodes:'));
    expect(await ws.problems(noNodes)).toEqual(['1:1: missing required key "nodes" (hint: add nodes: — Every Raspberry Pi of the cluster, one image each. Order matters: it is the order of templates\' node lists)']);
  });

  it('bad types', async () => {
    await single(edit(VALID, 'gateway: 10.0.0.1', 'gateway: [10.0.0.1]'), 'gateway: ^[10.0.0.1]', /network.gateway must be text, not a list/);
    await single(edit(VALID, 'generate_ssh_key: true', 'generate_ssh_key: yes'), 'generate_ssh_key: ^yes', /must be true or false, not "yes"/);
    await single(`${VALID}roles:\n  web: { port: eighty }\n`, '^eighty', /roles.web.port must be a whole number, not "eighty"/);
    await single(`${VALID}roles:\n  web: { port: 70000 }\n`, '^70000', /roles.web.port must be between 1 and 65535, not 70000/);
    await single(edit(VALID, 'cluster:\n  name: pistack\n  domain: pistack.lan', 'cluster: pistack'), 'cluster: ^pistack', /cluster must be a mapping/);
    await single(edit(VALID, '  name: pistack', '  name: true'), 'name: ^true', /cluster.name must be text, not true/);
  });

  it('duplicate keys', async () => {
    const yaml = edit(VALID, '  password: none\n', '  password: none\n  password: generate\n');
    await single(yaml, '^password: generate', /duplicate key "password" \(hint: it is already set at line 14/);
  });

  it('duplicate node names, IPs and MACs, at the second one', async () => {
    await single(edit(VALID, 'name: web2', 'name: web1'), 'name: ^web1, role: replica', /duplicate node name "web1" \(nodes 1 and 2\) \(hint: it is already used by the node on line 17/);
    await single(edit(VALID, 'ip: 10.0.0.12', 'ip: 10.0.0.11'), 'role: replica, ip: ^10.0.0.11', /duplicate IP address "10.0.0.11"/);
    const yaml = edit(VALID, 'ip: 10.0.0.12 }', 'ip: 10.0.0.12, mac: "DC:A6:32:00:00:13" }');
    await single(yaml, 'ip: 10.0.0.13, mac: ^"dc:a6', /duplicate MAC address "dc:a6:32:00:00:13" \(nodes 2 and 3\)/);
  });

  it('node addresses outside the network or on its network, broadcast or gateway address', async () => {
    await single(edit(VALID, 'ip: 10.0.0.12', 'ip: 10.0.1.12'), '^10.0.1.12', /node web2 address 10.0.1.12 is outside the network 10.0.0.0\/24/);
    await single(edit(VALID, 'ip: 10.0.0.12', 'ip: 10.0.0.0'), 'ip: ^10.0.0.0 ', /is the network address of 10.0.0.0\/24/);
    await single(edit(VALID, 'ip: 10.0.0.12', 'ip: 10.0.0.255'), '^10.0.0.255', /is the broadcast address/);
    await single(edit(VALID, 'ip: 10.0.0.12', 'ip: 10.0.0.1'), 'ip: ^10.0.0.1 ', /node web2 address 10.0.0.1 is the gateway/);
  });

  it('invalid host names and domains', async () => {
    await single(edit(VALID, 'name: web2', 'name: Web2'), '^Web2', /nodes\[2\]\.name: "Web2" is not a valid host name \(hint: lowercase letters/);
    await single(edit(VALID, 'name: web2', 'name: web_2'), '^web_2', /not a valid host name/);
    await single(edit(VALID, 'name: web2', 'name: -web2'), '^-web2', /not a valid host name/);
    await single(edit(VALID, 'domain: pistack.lan', 'domain: pistack..lan'), '^pistack..lan', /cluster.domain: "pistack..lan" is not a valid domain/);
    await single(edit(VALID, 'name: pistack', 'name: pi.stack'), '^pi.stack', /not a valid cluster name/);
  });

  it('invalid CIDR, gateway and DNS', async () => {
    await single(edit(VALID, 'cidr: 10.0.0.0/24', 'cidr: 10.0.0.0/33'), '^10.0.0.0/33', /"10.0.0.0\/33" is not a valid CIDR/);
    await single(edit(VALID, 'cidr: 10.0.0.0/24', 'cidr: 10.0.0.5/24'), '^10.0.0.5/24', /has host bits set \(hint: write the network address: 10.0.0.0\/24\)/);
    await single(edit(VALID, 'cidr: 10.0.0.0/24', 'cidr: 10.0.0.8/31'), '^10.0.0.8/31', /too small/);
    await single(edit(VALID, 'gateway: 10.0.0.1', 'gateway: 10.0.0.256'), '^10.0.0.256', /network.gateway: "10.0.0.256" is not a valid IPv4 address/);
    await single(edit(VALID, 'gateway: 10.0.0.1', 'gateway: 10.0.9.1'), '^10.0.9.1', /gateway 10.0.9.1 is outside the network/);
    await single(edit(VALID, 'dns: [10.0.0.1]', 'dns: [1.1.1.1, 010.0.0.1]'), '^010.0.0.1', /network.dns\[1\]: "010.0.0.1" is not a valid IPv4 address \(hint: four numbers 0-255 without leading zeros/);
  });

  it('unknown roles, listing the known ones', async () => {
    await single(edit(VALID, 'role: replica, ip: 10.0.0.13', 'role: dbs, ip: 10.0.0.13'), '^dbs', /unknown role "dbs" \(hint: known roles: allinone, db, lb; did you mean "db"\?/);
  });

  it('at least one database node, one load balancer and one web node', async () => {
    const onlyLbs = `${VALID.slice(0, VALID.indexOf('nodes:'))}nodes:\n  - { name: lb1, role: lb, ip: 10.0.0.10 }\n`;
    const problems = await ws.problems(onlyLbs);
    expect(problems).toEqual([
      `${locate(onlyLbs, '^nodes:')}: no database node: no node has a role tagged postgresql (hint: give at least one (three for failover) node the role allinone or db)`,
      `${locate(onlyLbs, '^nodes:')}: no web node: no node has a role tagged web (hint: give at least one node the role allinone or db)`,
    ]);
    await single(edit(VALID, 'lb1, role: lb', 'lb1, role: db'), '^nodes:', /no load balancer.*hint: give at least one node the role allinone or lb/);
    // With a database-only role, a cluster without web nodes is possible to write down.
    const roles = new Map([...ROLES, ['store', { tags: ['postgresql'] }]]);
    const yaml = `${VALID.slice(0, VALID.indexOf('nodes:'))}nodes:\n  - { name: lb1, role: lb, ip: 10.0.0.10 }\n  - { name: db1, role: store, ip: 10.0.0.11 }\n`;
    expect(await ws.problems(yaml, roles)).toEqual([`${locate(yaml, '^nodes:')}: no web node: no node has a role tagged web (hint: give at least one node the role allinone or db)`]);
  });

  it('base: url needs sha256 and https, sha256 is 64 hex digits, not both url and path', async () => {
    await single(edit(VALID, `  sha256: ${SHA}\n`, ''), 'url: ^https', /base.url has no sha256/);
    await single(edit(VALID, 'url: https://', 'url: http://'), 'url: ^http://', /base.url "http:\/\/.*" is not an https URL/);
    await single(edit(VALID, `sha256: ${SHA}`, 'sha256: abc123'), '^abc123', /base.sha256: "abc123" is not a valid SHA-256 \(hint: 64 hexadecimal digits/);
    await single(edit(VALID, `  sha256: ${SHA}\n`, `  sha256: ${SHA}\n  path: ./x.img\n`), '^./x.img', /base has both url and path/);
    await single(VALID.replace(/ {2}url: .*\n/, ''), '^base:', /base names no image \(hint: add url:/);
    const upper = await ws.load(edit(VALID, `sha256: ${SHA}`, `sha256: ${SHA.toUpperCase()}`));
    expect(upper.base.sha256).toBe(SHA);
  });

  it('bad MAC, timezone, locale, wifi country', async () => {
    await single(edit(VALID, 'mac: "dc:a6:32:00:00:13"', 'mac: "dc:a6:32:00:13"'), '^"dc:a6:32:00:13"', /nodes\[3\]\.mac: "dc:a6:32:00:13" is not a valid MAC address/);
    await single(`${VALID}locale: { timezone: Europe London }\n`, '^Europe London', /locale.timezone: "Europe London" is not a valid time zone \(hint: an IANA zone name/);
    await single(`${VALID}locale: { locale: english }\n`, '^english', /is not a valid locale/);
    const wifi = (country: string): string => `${VALID}wifi:\n  country: ${country}\n  ssid: home\n  passphrase: "correct horse"\n`;
    await single(wifi('gb'), 'country: ^gb', /wifi.country: "gb" is not a valid Wi-Fi country \(hint: a two-letter ISO 3166-1 code/);
    await single(wifi('GBR'), 'country: ^GBR', /not a valid Wi-Fi country/);
    await single(`${VALID}wifi: { country: GB, ssid: home, passphrase: short }\n`, '^short', /not a valid WPA2 passphrase/);
  });

  it('a plaintext password, saying why it is refused', async () => {
    const problem = await single(edit(VALID, 'password: none', 'password: hunter2'), '^hunter2', /a plaintext password is not accepted/);
    expect(problem).toMatch(/hint: cluster.yaml is meant to be shared and committed.*`generate`.*mkpasswd/);
  });

  it('two services on one port', async () => {
    await single(`${VALID}roles:\n  lb: { stats_port: 80 }\n`, 'stats_port: ^80', /roles.lb.stats_port 80 is already used by roles.web.port/);
  });
});

describe('YAML syntax', () => {
  it('reports a syntax error with its location', async () => {
    const error = await ws.load('cluster:\n  name: pistack\n\tdomain: pistack.lan\n').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PibakeError);
    const { location, message } = error as PibakeError;
    expect(message).toMatch(/^YAML syntax error: tab characters/);
    expect(location).toEqual({ file: ws.file, line: 3, column: 1 });
  });

  it('reports an empty file and a file that is not a mapping', async () => {
    expect(await ws.problems('')).toEqual(['1:1: the inventory is empty (hint: start from the cluster.yaml shipped with pibake)']);
    expect(await ws.problems('- a\n- b\n')).toEqual([expect.stringMatching(/^1:1: the file must be a mapping \(key: value lines\), not a list \(hint: write key: value pairs/)]);
  });

  it('reports a missing inventory file', async () => {
    const error = await loadInventory(join(ws.dir, 'nope.yaml'), ROLES).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PibakeError);
    expect((error as PibakeError).message).toMatch(/cannot read the inventory .*nope\.yaml \(ENOENT\)/);
  });
});

describe('every problem at once', () => {
  it('reports all problems of a kitchen-sink file, in file order', async () => {
    const yaml = `cluster:
  name: Pistack
  domian: pistack.lan
network:
  cidr: 10.0.0.0/24
  gateway: 10.0.1.1
  dns: [10.0.0.300]
base: { url: http://example.com/x.img.xz, sha256: nothex }
admin:
  user: root
  ssh_keys: [./missing.pub]
  password: hunter2
  password: none
locale: { timezone: "Europe/ London", keybaord: gb }
wifi: { country: gb, ssid: home, passphrase: "correct horse" }
nodes:
  - { name: lb1, role: balancer, ip: 10.0.0.10, mac: "dc:a6:32:00:00" }
  - { name: web1, role: primary, ip: 10.0.0.11 }
  - { name: web1, role: primary, ip: 10.0.0.11 }
  - { name: web3, role: replica, ip: 192.168.1.13 }
roles:
  web: { port: 5432, app_port: "8000" }
`;
    const problems = await ws.problems(yaml);
    const expected: [string, RegExp][] = [
      ['^cluster:', /missing required key "cluster.domain"/],
      ['name: ^Pistack', /not a valid cluster name/],
      ['^domian', /unknown key "domian" in cluster \(hint: did you mean "domain"\?\)/],
      ['gateway: ^10.0.1.1', /gateway 10.0.1.1 is outside the network 10.0.0.0\/24/],
      ['^10.0.0.300', /network.dns\[0\]: "10.0.0.300" is not a valid IPv4 address/],
      ['url: ^http://', /is not an https URL/],
      ['^nothex', /base.sha256: "nothex" is not a valid SHA-256/],
      ['user: ^root', /admin.user may not be root/],
      ['^./missing.pub', /missing\.pub does not exist/],
      ['^hunter2', /plaintext password is not accepted/],
      ['^password: none', /duplicate key "password"/],
      ['^"Europe/ London"', /not a valid time zone/],
      ['^keybaord', /did you mean "keyboard"/],
      ['country: ^gb', /not a valid Wi-Fi country/],
      ['^balancer', /unknown role "balancer" \(hint: known roles: allinone, db, lb/],
      ['^"dc:a6:32:00:00"', /not a valid MAC address/],
      ['^nodes:', /no load balancer/],
      ['{ name: ^web1, role: primary, ip: 10.0.0.11 }\n  - { name: web3', /duplicate node name "web1"/],
      ['{ name: web1, role: primary, ip: ^10.0.0.11 }\n  - { name: web3', /duplicate IP address "10.0.0.11"/],
      ['^192.168.1.13', /node web3 address 192.168.1.13 is outside the network/],
      ['port: ^5432', /roles.web.port 5432 is already used by roles.postgresql.port/],
      ['^"8000"', /roles.web.app_port must be a whole number, not "8000"/],
    ];
    const missing = expected.filter(([marker, message]) => !problems.some((p) => p.startsWith(`${locate(yaml, marker)}: `) && message.test(p)));
    expect(missing.map(([marker, message]) => `${marker} ${message}`), problems.join('\n')).toEqual([]);
    expect(problems).toHaveLength(expected.length);
    const order = problems.map((p) => p.split(': ')[0]?.split(':').map(Number) ?? []);
    const sorted = [...order].sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0) || (a[1] ?? 0) - (b[1] ?? 0));
    expect(order).toEqual(sorted);
  });
});

describe('values that would break a node or the files they reach (issue 11)', () => {
  it('a control character anywhere is refused, named by position, and never echoed', async () => {
    // The attack from the issue: a new NetworkManager group through the SSID.
    const wifi = `${VALID}wifi: { country: GB, ssid: "n\\n[ipv4]\\ndns=6.6.6.6;", passphrase: "correct horse" }\n`;
    const problem = await single(wifi, 'ssid: ^"n', /^\d+:\d+: wifi\.ssid contains a line feed at character 2 \(hint: write the value without control characters/);
    expect(problem).not.toContain('[ipv4]');
    await single(edit(VALID, 'name: web2', 'name: "web2\\u001b[2J"'), '^"web2', /nodes\[2\]\.name contains an escape character at character 5/);
    await single(edit(VALID, '  generate_ssh_key: true\n', '  ssh_keys: ["ssh-ed25519 AAAA\\rx"]\n'), '^"ssh-ed25519', /admin\.ssh_keys\[0\] contains a carriage return/);
    await single(`${VALID}wifi: { country: GB, ssid: "a\\u2028b", passphrase: "correct horse" }\n`, 'ssid: ^"a', /wifi\.ssid contains the control character U\+2028 at character 2/);
  });

  it('a passphrase is never quoted in a message', async () => {
    const problem = await single(`${VALID}wifi: { country: GB, ssid: home, passphrase: "sécret-but-short" }\n`, '^"sécret', /wifi\.passphrase is not a valid WPA2 passphrase/);
    expect(problem).not.toContain('sécret');
  });

  it.each([['postgres', 'PostgreSQL runs as it'], ['haproxy', 'HAProxy runs as it'], ['www-data', 'nginx and the web application'], ['systemd-network', 'systemd'], ['daemon', 'the Debian base system']])(
    'an admin user that is a system account: %s', async (user, owner) => {
      await single(edit(VALID, 'user: pi', `user: ${user}`), `user: ^${user}`, new RegExp(`admin\\.user "${user}" is a system account \\(${owner}\\) \\(hint: name an ordinary user`));
    });

  it('a service on the SSH port', async () => {
    await single(`${VALID}roles:\n  web: { port: 22 }\n`, 'port: ^22', /roles\.web\.port 22 is the SSH port of every node \(sshd\) \(hint: pick another port\)/);
  });

  it('a time zone the tz database does not know, or spelt in the wrong case', async () => {
    await single(`${VALID}locale: { timezone: Mars/Olympus }\n`, '^Mars/Olympus', /time zone "Mars\/Olympus" is not in the tz database/);
    await single(`${VALID}locale: { timezone: europe/london }\n`, '^europe/london', /time zone "europe\/london" is spelt Europe\/London \(hint: write Europe\/London/);
    expect((await ws.load(`${VALID}locale: { timezone: America/Argentina/Buenos_Aires }\n`)).locale.timezone).toBe('America/Argentina/Buenos_Aires');
  });

  it.each([['ff:ff:ff:ff:ff:ff', 'is the broadcast address'], ['01:00:5e:00:00:01', 'is a multicast address'], ['00:00:00:00:00:00', 'is all zeros']])(
    'the MAC %s', async (mac, why) => {
      await single(edit(VALID, 'mac: "dc:a6:32:00:00:13"', `mac: "${mac}"`), `^"${mac}"`, new RegExp(`MAC ${mac} ${why}`));
    });

  it('networks no cluster can have, and unusable name servers', async () => {
    await among(edit(VALID, 'cidr: 10.0.0.0/24', 'cidr: 0.0.0.0/0'), '^0.0.0.0/0', /network \/0 is larger than any local network/);
    await among(edit(VALID, 'cidr: 10.0.0.0/24', 'cidr: 127.0.0.0/24'), '^127.0.0.0/24', /lies in 127\.0\.0\.0\/8 \(loopback\)/);
    await among(edit(VALID, 'cidr: 10.0.0.0/24', 'cidr: 224.0.0.0/24'), '^224.0.0.0/24', /lies in 224\.0\.0\.0\/4 \(multicast\)/);
    await single(edit(VALID, 'dns: [10.0.0.1]', 'dns: [0.0.0.0]'), 'dns: [^0.0.0.0]', /name server 0\.0\.0\.0 lies in 0\.0\.0\.0\/8/);
    await single(edit(VALID, 'dns: [10.0.0.1]', 'dns: [255.255.255.255]'), '^255.255.255.255', /name server 255\.255\.255\.255 lies in 240\.0\.0\.0\/4/);
  });
});

describe('files pibake reads: regular files only, with a size cap (issue 11)', () => {
  it('refuses /dev/zero as the inventory at once, and an oversized one', async () => {
    const started = Date.now();
    const error = await loadInventory('/dev/zero', ROLES).catch((e: unknown) => e);
    expect((error as PibakeError).message).toBe('the inventory /dev/zero is not a regular file (it is a character device)');
    expect(Date.now() - started).toBeLessThan(5000);
    const big = await ws.write('big.yaml', `# ${'x'.repeat(2 * 1024 * 1024)}\n${VALID}`);
    expect(((await loadInventory(big, ROLES).catch((e: unknown) => e)) as PibakeError).message).toMatch(/^the inventory .*big\.yaml is 2\.0 MiB, more than the 1\.0 MiB pibake reads for it$/);
  });

  it('refuses /dev/zero and a FIFO as SSH key files', async () => {
    await single(edit(VALID, '  generate_ssh_key: true\n', '  ssh_keys: [/dev/zero]\n'), '^/dev/zero', /SSH key file \/dev\/zero is not a regular file \(it is a character device\)/);
    execFileSync('mkfifo', [join(ws.dir, 'fifo.pub')]);
    await single(edit(VALID, '  generate_ssh_key: true\n', '  ssh_keys: [fifo.pub]\n'), '^fifo.pub', /fifo\.pub is not a regular file \(it is a FIFO\)/);
  });

  it('never shows the content of a file that is not a key (say /etc/shadow)', async () => {
    const secret = 'root:$6$Xy7salt$hashhashhash:19000:0:99999:7:::';
    await ws.write('shadow', `${secret}\n`);
    const problem = await single(edit(VALID, '  generate_ssh_key: true\n', '  ssh_keys: [shadow]\n'), '^shadow', /shadow is not a public key file: line 1: not an SSH public key \(no key type\)/);
    expect(problem).not.toContain('root:');
    expect(problem).not.toContain('$6$');
  });
});
