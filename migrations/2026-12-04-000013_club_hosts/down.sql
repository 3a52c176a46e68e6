DROP TABLE club_hosts;
