DROP TABLE bad_releases;
DROP TABLE switches;
DROP TABLE clubs;
