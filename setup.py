"""Packaging from settings.ini (nbdev 2 layout, no pkg_resources)."""
import configparser, shlex, setuptools
from pathlib import Path

cfg = configparser.ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
c = cfg['DEFAULT']
readme = Path('README.md')
setuptools.setup(
    name=c['lib_name'], version=c['version'], description=c['description'],
    keywords=c['keywords'].split(), author=c['author'], author_email=c['author_email'],
    license=c['license'], url=c['git_url'], python_requires='>=' + c['min_python'],
    classifiers=['Programming Language :: Python :: 3', 'License :: OSI Approved :: Apache Software License'],
    long_description=readme.read_text(encoding='utf-8') if readme.exists() else '',
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=[c['lib_path'], c['lib_path'] + '.*']),
    include_package_data=True,
    install_requires=shlex.split(c.get('requirements', '')),
    extras_require={'dev': shlex.split(c.get('dev_requirements', ''))},
    entry_points={'console_scripts': c.get('console_scripts', '').split(),
                  'nbdev': [f"{c['lib_path']}={c['lib_path']}._modidx:d"]},
    zip_safe=False)
